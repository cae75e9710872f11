// The Asio socket and timer types every part of the engine uses. Internal
// header of the engine_*.cc files and its components (it pulls in Asio).
//
//   StreamSocket socket(io);                    // TCP or UNIX stream
//   Timer timer(io, std::chrono::seconds(1));   // steady clock
#ifndef SOCKAGENT_AGENT_ENGINE_SOCKETS_H_
#define SOCKAGENT_AGENT_ENGINE_SOCKETS_H_

#include <asio.hpp>
#include <chrono>
#include <vector>

namespace sockagent {
namespace engine_internal {

// Every I/O object is bound to the io_context's own executor rather than
// Asio's default type-erased any_io_executor: a socket object shrinks from
// 88 to 40 bytes and a timer from 120 to 72, per connection.
using Executor = asio::io_context::executor_type;
using StreamProtocol = asio::generic::stream_protocol;
using StreamSocket = asio::basic_stream_socket<StreamProtocol, Executor>;
using StreamAcceptor = asio::basic_socket_acceptor<StreamProtocol, Executor>;
using UdpSocket = asio::basic_datagram_socket<asio::ip::udp, Executor>;
using Timer =
    asio::basic_waitable_timer<std::chrono::steady_clock,
                               asio::wait_traits<std::chrono::steady_clock>,
                               Executor>;
using IpEndpoints = std::vector<asio::ip::tcp::endpoint>;

}  // namespace engine_internal
}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_ENGINE_SOCKETS_H_
