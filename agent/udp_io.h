// UdpIo: the engine's UDP. Clients hold one connected socket per
// connection; servers take datagrams in batches (recvmmsg) and keep one
// peer session (a Conn) per remote address. Replies and Sends to a session
// leave through its server's socket, queued while that is not writable;
// echo and greeting replies pass the server's reply budget
// (agent/udp_budget.h). It owns no state of its own: the sockets belong to
// their Server or Conn, the sessions to their Server (Server::sessions).
//
// Lock: a member of EngineImpl, guarded by the engine lock; every method
// is called with it held (the loop's handlers, or Send inline on a gRPC
// thread), and its handlers take it (EngineImpl::Locked). Entry points
// assert it for clang's analysis (AssertEngineLock).
//
//   udp_.ArmRead(server, i);          // a UDP server socket starts reading
//   udp_.SendDatagram(c, data);       // Send on a peer session or client
#ifndef SOCKAGENT_AGENT_UDP_IO_H_
#define SOCKAGENT_AGENT_UDP_IO_H_

#include <asio.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "agent/engine_objects.h"

namespace sockagent {
namespace engine_internal {

class EngineImpl;

class UdpIo {
 public:
  explicit UdpIo(EngineImpl& engine) : engine_(engine) {}
  UdpIo(const UdpIo&) = delete;
  UdpIo& operator=(const UdpIo&) = delete;

  // A UDP client's socket is readable: datagrams into its receive queue.
  void ReadClient(Conn& c);
  // A UDP client's queued datagrams to its socket.
  void FlushClient(Conn& c);
  // Appends a datagram to c's receive queue, or drops and counts it.
  void BufferDatagram(Conn& c, const char* data, size_t n);
  // Whether `cost` more bytes fit c's receive buffer and the agent-wide
  // total; if not, the datagram of `n` bytes is dropped and counted
  // (datagrams_dropped, a DATAGRAM_DROPPED event).
  bool RoomToReceive(Conn& c, uint64_t cost, size_t n);
  // Server socket `index` of `s` waits for datagrams.
  void ArmRead(Server& s, size_t index);
  // Before an echo or greeting reply of `reply_bytes` to a datagram of
  // `received` bytes from `from`: true if the server's reply budget lets it
  // go; otherwise counts the drop and emits kDatagramDropped saying why
  // (agent/udp_reply.cc).
  bool AdmitReply(Server& s, Conn& c, const asio::ip::udp::endpoint& from,
                  size_t received, size_t reply_bytes);
  // Every datagram the agent sends on a UDP connection (a Send, a Stream
  // chunk, an echo or greeting reply, a proxy's relay) comes here: through
  // the connection's UDP faults when it has any (fault_stage.h), else
  // SendNow. Errors are the caller's to report.
  absl::Status SendDatagram(Conn& c, std::string data);
  // Without faults: a peer session's or a UDP client's datagram.
  absl::Status SendNow(Conn& c, std::string data);
  // A datagram received on `c` (already counted) to its behaviour: a
  // session's server behaviour, a client's receive queue or proxy relay.
  // Received datagrams pass the RECEIVED faults first (fault_stage.h),
  // which call this for what they let through.
  void Deliver(Conn& c, const char* data, size_t n);

 private:
  // One datagram from a server socket to a session's peer; queued while the
  // socket is not writable.
  absl::Status SendSessionDatagram(Conn& c, std::string data);
  // One datagram on a UDP client's socket; queued while it is not
  // writable.
  absl::Status SendClientDatagram(Conn& c, std::string data);
  void OnReadable(uint64_t server_num, size_t index,
                  const asio::error_code& ec);
  void OnDatagram(Server& s, size_t index, const asio::ip::udp::endpoint& from,
                  const char* data, size_t n);
  // A session's datagram (from `from`) to its server's behaviour.
  void DeliverToSession(Server& s, Conn& session,
                        const asio::ip::udp::endpoint& from, const char* data,
                        size_t n);
  Conn* NewSession(Server& s, size_t index,
                   const asio::ip::udp::endpoint& from);
  void ArmWrite(Server& s, size_t index);
  void OnWritable(uint64_t server_num, size_t index,
                  const asio::error_code& ec);

  EngineImpl& engine_;
};

}  // namespace engine_internal
}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_UDP_IO_H_
