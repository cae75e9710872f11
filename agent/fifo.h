// Fifo<T>: a first-in first-out queue that owns no memory while empty.
//
// The engine keeps several queues per connection (received bytes, bytes to
// send, datagrams). std::deque allocates about 600 bytes even when empty,
// which alone would break the "an idle connection costs well under 1 KiB"
// budget. Fifo is one pointer while empty; its items live in a vector
// allocated on the first push_back and freed as soon as the queue drains.
//
// Not thread-safe: the engine uses it under its engine lock only (on the
// loop thread, or on a gRPC thread inside an inline control call).
//
//   Fifo<std::string> q;      // sizeof(q) == sizeof(void*), no allocation
//   q.push_back("a");
//   q.front();                // "a"
//   q.pop_front();            // memory released: q is empty again
#ifndef SOCKAGENT_AGENT_FIFO_H_
#define SOCKAGENT_AGENT_FIFO_H_

#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

namespace sockagent {

template <typename T>
class Fifo {
 public:
  Fifo() = default;
  Fifo(Fifo&&) noexcept = default;
  Fifo& operator=(Fifo&&) noexcept = default;

  bool empty() const { return state_ == nullptr; }
  size_t size() const {
    return state_ == nullptr ? 0 : state_->items.size() - state_->head;
  }

  // Precondition for the accessors below: !empty() (and i < size()).
  T& front() { return state_->items[state_->head]; }
  const T& front() const { return state_->items[state_->head]; }
  T& back() { return state_->items.back(); }
  T& operator[](size_t i) { return state_->items[state_->head + i]; }
  const T& operator[](size_t i) const {
    return state_->items[state_->head + i];
  }

  void push_back(T item) {
    if (state_ == nullptr) state_ = std::make_unique<State>();
    state_->items.push_back(std::move(item));
  }

  void pop_front() {
    State& s = *state_;
    s.items[s.head] = T();  // Free the item's memory now, not at compaction.
    ++s.head;
    if (s.head == s.items.size()) {
      state_.reset();
      return;
    }
    // Compact once the consumed prefix dominates, so a queue that never
    // fully drains does not grow without bound.
    if (s.head >= kCompactAfter && s.head * 2 >= s.items.size()) {
      s.items.erase(s.items.begin(), s.items.begin() + s.head);
      s.head = 0;
    }
  }

  void clear() { state_.reset(); }

 private:
  static constexpr size_t kCompactAfter = 32;

  struct State {
    std::vector<T> items;
    size_t head = 0;  // Index of front(); items before it are consumed.
  };
  // Invariant: null exactly when the queue is empty.
  std::unique_ptr<State> state_;
};

}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_FIFO_H_
