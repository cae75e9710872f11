// The Stream RPC: netcat through the agent. One reactor per call pipes the
// caller's data messages into an attached (or newly opened) connection and
// the connection's bytes back, with backpressure both ways:
//   caller -> socket: the next request is read only after the engine took
//     the previous chunk (Engine::StreamSend waits for send-buffer room);
//   socket -> caller: the next engine receive starts only after every
//     response of the previous one was written, so while the caller does
//     not read, the connection's receive buffer fills and the socket is not
//     read (TCP flow control slows the peer).
// Memory per call: one request, at most one receive's worth of responses
// (max_receive_bytes), plus the connection's own bounded buffers.
#ifndef SOCKAGENT_SERVICE_STREAM_REACTOR_H_
#define SOCKAGENT_SERVICE_STREAM_REACTOR_H_

#include <memory>

#include "agent/engine.h"
#include "sockagent/v1/agent.grpc.pb.h"

namespace sockagent {

// The Stream calls in progress, so shutdown can end them all.
struct StreamRegistry;

std::shared_ptr<StreamRegistry> NewStreamRegistry();

// Ends every Stream call with UNAVAILABLE "agent shutting down" (detaching
// from its connection) and refuses new ones. Any thread.
void EndStreams(StreamRegistry& registry);

// Raw messages: the reactor parses each StreamRequest itself and serializes
// each StreamResponse, because gRPC 1.51 hands a request that fails to parse
// to OnReadDone(false), exactly like the caller's half-close (WritesDone),
// and the two must not end alike: a half-close sends FIN to the peer, a
// malformed message ends the call INVALID_ARGUMENT as the caller's going
// away would (an opened connection closes, an attached one is detached and
// stays open; the peer sees no FIN).
using StreamBidiReactor =
    grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>;

// `engine` must outlive the call.
StreamBidiReactor* NewStreamReactor(Engine& engine,
                                    std::shared_ptr<StreamRegistry> registry,
                                    grpc::CallbackServerContext* context);

}  // namespace sockagent

#endif  // SOCKAGENT_SERVICE_STREAM_REACTOR_H_
