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
