// Relays TCP control connections to gRPC through a socketpair, so the
// daemon sees each connection's HTTP/2 frames before gRPC does
// (h2_guard.h: RST_STREAM buckets, streams before the SETTINGS ack).
//
//   client --TCP-- A [relay] B ==socketpair== C -- gRPC
//
// Every byte is forwarded unchanged and in order, both ways. A FIN from the
// client becomes shutdown(SHUT_WR) on B; gRPC closing C (B reads EOF) closes
// A once what gRPC wrote was passed on. Bounded: one buffer of
// `buffer_bytes` per direction and connection, allocated only while that
// direction has data in flight (an idle connection holds none); a direction
// reads again only after its buffer was written out, so a side that does not
// read stops the other side's reading (the kernel's buffers push back on the
// sender).
//
// When the agent-wide RST_STREAM bucket is empty, a connection that wants
// to pass one more RST_STREAM stops being read until a token is due (at
// most `agent_rst_per_second` resets per second reach gRPC, whatever the
// number of connections); a connection over its own bucket is closed and
// reported through `on_cut`.
//
// One thread (Asio) for all connections. Add() and Stop() from any thread;
// `on_cut` runs on the relay's thread.
#ifndef SOCKAGENT_SERVICE_CONTROL_RELAY_H_
#define SOCKAGENT_SERVICE_CONTROL_RELAY_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "service/h2_guard.h"

namespace sockagent {

struct ControlRelayOptions {
  H2GuardLimits limits;
  double agent_rst_per_second = 1000;
  double agent_rst_burst = 1000;
  size_t buffer_bytes = 128 * 1024;
};

class ControlRelay {
 public:
  // (key, seq, reason): the connection added with that key and seq was cut.
  using CutCallback =
      std::function<void(int key, uint64_t seq, absl::string_view reason)>;

  ControlRelay(const ControlRelayOptions& options, CutCallback on_cut);
  ~ControlRelay();  // Stop(); every relayed connection is closed.

  ControlRelay(const ControlRelay&) = delete;
  ControlRelay& operator=(const ControlRelay&) = delete;

  // Starts the relay thread. Once.
  void Start();
  // Relays `client_fd` (a TCP socket, ownership taken) and `grpc_side_fd`
  // (our end of the socketpair, ownership taken). Any thread.
  void Add(int client_fd, int grpc_side_fd, int key, uint64_t seq);
  // Stops the thread and closes every connection. Idempotent.
  void Stop();
  // When a connection last had to wait for the agent-wide RST_STREAM
  // bucket (InfinitePast if never). Any thread.
  absl::Time last_throttled() const;

  class Impl;  // In control_relay.cc (its connections need to name it).

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_CONTROL_RELAY_H_
