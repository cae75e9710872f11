#include "agent/byte_queue.h"

#include <algorithm>
#include <utility>

namespace sockagent {

void ByteQueue::Append(absl::string_view data) {
  if (data.empty()) return;
  if (state_ == nullptr) state_ = std::make_unique<State>();
  Fifo<std::string>& chunks = state_->chunks;
  if (!chunks.empty() && chunks.back().size() + data.size() <= kCoalesceBytes) {
    chunks.back().append(data.data(), data.size());
  } else {
    chunks.push_back(std::string(data));
  }
  state_->size += data.size();
}

void ByteQueue::AppendOwned(std::string&& data) {
  if (data.size() <= kCoalesceBytes) {
    Append(absl::string_view(data));
    return;
  }
  if (state_ == nullptr) state_ = std::make_unique<State>();
  state_->size += data.size();
  state_->chunks.push_back(std::move(data));
}

std::string ByteQueue::Take(size_t max) {
  const size_t n = std::min(max, size());
  std::string out;
  if (n == 0) return out;
  State& s = *state_;
  // Whole untouched front chunk: hand it over without copying.
  if (s.head_offset == 0 && s.chunks.front().size() == n) {
    out = std::move(s.chunks.front());
    s.chunks.pop_front();
    s.size -= n;
    if (s.size == 0) state_.reset();
    return out;
  }
  out.reserve(n);
  while (out.size() < n) {
    const std::string& front = state_->chunks.front();
    const size_t offset = state_->head_offset;
    const size_t k = std::min(front.size() - offset, n - out.size());
    out.append(front, offset, k);
    Consume(k);
  }
  return out;
}

size_t ByteQueue::Peek(absl::string_view* out, size_t max_spans) const {
  if (state_ == nullptr) return 0;
  const Fifo<std::string>& chunks = state_->chunks;
  size_t n = 0;
  for (size_t i = 0; i < chunks.size() && n < max_spans; ++i) {
    absl::string_view chunk = chunks[i];
    if (i == 0) chunk.remove_prefix(state_->head_offset);
    out[n++] = chunk;
  }
  return n;
}

absl::string_view ByteQueue::Span(size_t chunk) const {
  absl::string_view span = state_->chunks[chunk];
  if (chunk == 0) span.remove_prefix(state_->head_offset);
  return span;
}

bool ByteQueue::MatchesAt(size_t chunk, size_t offset,
                          absl::string_view needle) const {
  size_t matched = 0;
  while (matched < needle.size() && chunk < state_->chunks.size()) {
    const absl::string_view span = Span(chunk);
    const size_t n = std::min(span.size() - offset, needle.size() - matched);
    if (span.substr(offset, n) != needle.substr(matched, n)) return false;
    matched += n;
    ++chunk;
    offset = 0;
  }
  return matched == needle.size();
}

size_t ByteQueue::FindEnd(absl::string_view needle, size_t from,
                          size_t limit) const {
  const size_t total = std::min(limit, size());
  if (needle.empty() || total < needle.size()) return std::string::npos;
  size_t base = 0;  // Queue offset of the current chunk's first byte.
  for (size_t i = 0; i < state_->chunks.size() && base < total; ++i) {
    const absl::string_view span = Span(i);
    size_t p = from > base ? from - base : 0;
    while (p < span.size()) {
      p = span.find(needle[0], p);
      if (p == absl::string_view::npos) break;
      if (base + p + needle.size() > total) return std::string::npos;
      if (MatchesAt(i, p, needle)) return base + p + needle.size();
      ++p;
    }
    base += span.size();
  }
  return std::string::npos;
}

void ByteQueue::Consume(size_t n) {
  if (n == 0) return;
  State& s = *state_;
  s.size -= n;
  while (n > 0) {
    const size_t left = s.chunks.front().size() - s.head_offset;
    if (n < left) {
      s.head_offset += n;
      break;
    }
    n -= left;
    s.chunks.pop_front();
    s.head_offset = 0;
  }
  if (s.size == 0) state_.reset();
}

}  // namespace sockagent
