// TLS on data sockets: what a server or client asks for (TlsServerSpec,
// TlsClientSpec), what a handshake saw (TlsInfo), and the OpenSSL objects
// behind them: contexts (TlsServerContext, TlsClientContext), one
// TlsSession per connection (an SSL on the connection's own non-blocking
// descriptor, SSL_set_fd), and the engine's bounded client session cache
// (TlsSessionCache). No Asio here: the engine drives a session from its
// readiness waits (agent/tls_stage.cc) and arms the wait a result asks
// for. Certificate facts come from OpenSSL's own APIs only.
//
// Lock: none of its own. Contexts are immutable after Create and shared
// (shared_ptr) by the connections using them; a session and the session
// cache are touched only under the engine lock.
//
// OpenSSL writes with write(2), not send(MSG_NOSIGNAL): a process using TLS
// sessions must ignore SIGPIPE (sockagentd does).
//
//   auto ctx = TlsServerContext::Create(spec);          // validates spec
//   auto s = TlsSession::Create(*ctx, fd);               // accepted socket
//   TlsIo r = s->Handshake();  // kWantRead: wait for readability, again
#ifndef SOCKAGENT_AGENT_TLS_H_
#define SOCKAGENT_AGENT_TLS_H_

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

// OpenSSL's types, without its headers in every engine file.
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;

namespace sockagent {

// Bounds on what a request may carry (INVALID_ARGUMENT naming the field).
inline constexpr size_t kMaxTlsPemBytes = 64 * 1024;  // Per PEM field.
inline constexpr size_t kMaxTlsChainCertificates = 10;
inline constexpr size_t kMaxTlsAlpnProtocols = 16;
inline constexpr size_t kMaxTlsAlpnNameBytes = 255;  // RFC 7301.
inline constexpr size_t kMaxTlsNames = 16;           // Self-signed names.
inline constexpr size_t kMaxTlsNameBytes = 253;
// A reported peer chain keeps at most this many certificates (the count
// seen is reported too).
inline constexpr size_t kMaxTlsReportedChain = 10;
// What the reported chain may hold in all (names, SANs, fingerprints, PEM),
// per connection: a hostile peer's 64 KiB certificate list of escaped
// names would otherwise leave ~1 MiB of facts per connection. Leaf first:
// PEM goes first, then SANs (a last "...N more SANs not kept" says so),
// then the certificates after the leaf.
inline constexpr size_t kMaxTlsReportedChainBytes = 16 * 1024;
// Client sessions kept for resumption, engine-wide; the oldest goes first.
inline constexpr size_t kTlsSessionCacheEntries = 256;
// A peer's certificate list (the handshake message) above this fails the
// handshake; OpenSSL's default is 100 KiB.
inline constexpr long kMaxTlsPeerCertList = 64 * 1024;
// Sessions a server keeps per server for TLS 1.2 resumption by id.
inline constexpr long kTlsServerSessionCacheEntries = 1024;
inline constexpr absl::Duration kDefaultTlsHandshakeTimeout = absl::Seconds(10);
inline constexpr absl::Duration kMaxTlsHandshakeTimeout = absl::Minutes(10);

enum class TlsVersion { kDefault, kTls12, kTls13 };
enum class TlsClientAuth { kNone, kRequest, kRequire };

struct TlsServerSpec {
  // Either a chain + key (PEM), or self_signed (a fresh P-256 key and a
  // certificate for self_signed_names; the first also its subject CN).
  std::string certificate_chain_pem;
  std::string private_key_pem;
  // Where the PEM above was read from on the agent host ("" when it came in
  // the request): a listing names the file, never the key's contents.
  std::string certificate_chain_path;
  std::string private_key_path;
  bool self_signed = false;
  std::vector<std::string> self_signed_names;
  std::string client_ca_pem;  // Mutual TLS: whom to trust.
  TlsClientAuth client_auth = TlsClientAuth::kNone;
  std::vector<std::string> alpn;  // Offered, in preference order.
  TlsVersion min_version = TlsVersion::kDefault;
  TlsVersion max_version = TlsVersion::kDefault;
  absl::Duration handshake_timeout = absl::ZeroDuration();  // 0: default.

  // Field by field: named servers compare specs (agent/server_name.h).
  bool operator==(const TlsServerSpec&) const = default;
};

enum class TlsTrust { kSystem, kCaPem, kNone };

struct TlsClientSpec {
  std::string server_name;  // SNI and the name verified; "": the host.
  TlsTrust trust = TlsTrust::kSystem;
  std::string ca_pem;                 // kCaPem.
  std::string certificate_chain_pem;  // Optional client certificate.
  std::string private_key_pem;
  std::vector<std::string> alpn;
  TlsVersion min_version = TlsVersion::kDefault;
  TlsVersion max_version = TlsVersion::kDefault;
  absl::Duration handshake_timeout = absl::ZeroDuration();  // 0: default.

  // Field by field: named proxies compare specs (agent/server_name.h).
  bool operator==(const TlsClientSpec&) const = default;
};

struct TlsCertificateInfo {
  std::string subject;  // RFC 2253, e.g. "CN=example.test,O=Example".
  std::string issuer;
  std::vector<std::string> sans;  // "DNS:a.test", "IP:127.0.0.1", ...
  absl::Time not_before = absl::InfinitePast();
  absl::Time not_after = absl::InfinitePast();
  std::string sha256_fingerprint;  // "AB:CD:...".
  std::string pem;
};

// What a handshake saw. `summary` drops the PEM (list pages).
struct TlsInfo {
  bool client = false;  // This side's role.
  bool handshake_done = false;
  std::string version;  // "TLSv1.3".
  std::string cipher;   // "TLS_AES_256_GCM_SHA384".
  std::string alpn;     // Negotiated; "" none.
  std::string sni;      // Client: sent; server: received.
  bool resumed = false;
  // "ok", "verification off", the verify error in OpenSSL's words
  // ("certificate has expired"), or "no certificate presented".
  std::string verification;
  bool verified = false;
  std::vector<TlsCertificateInfo> peer_chain;  // Leaf first; capped.
  uint32_t peer_chain_length = 0;              // As presented.
  // The peer's FIN came without close_notify.
  bool truncated = false;
  std::string failure;  // Handshake failure, in OpenSSL's words.
};

// The memory `info` holds, as charged against the agent-wide byte bound
// (agent/ledger.h): the struct, its strings and the chain's text.
uint64_t TlsInfoBytes(const TlsInfo& info);
// `info` with no certificate's PEM kept (the summaries stay), or `info`
// itself when it holds none.
std::shared_ptr<const TlsInfo> TlsInfoWithoutPem(
    std::shared_ptr<const TlsInfo> info);

// What ServerInfo reports of a TLS server.
struct TlsServerInfo {
  bool self_signed = false;
  TlsCertificateInfo certificate;  // The leaf it presents.
  TlsClientAuth client_auth = TlsClientAuth::kNone;
  std::vector<std::string> alpn;
  TlsVersion min_version = TlsVersion::kDefault;
  TlsVersion max_version = TlsVersion::kDefault;
  absl::Duration handshake_timeout = kDefaultTlsHandshakeTimeout;
};

class TlsServerContext final {
 public:
  // Validates every field (INVALID_ARGUMENT naming it: malformed PEM, a
  // key that does not match the certificate, bad ALPN names, sizes).
  static absl::StatusOr<std::shared_ptr<const TlsServerContext>> Create(
      const TlsServerSpec& spec);
  ~TlsServerContext();
  TlsServerContext(const TlsServerContext&) = delete;
  TlsServerContext& operator=(const TlsServerContext&) = delete;

  SSL_CTX* ctx() const { return ctx_; }
  const std::shared_ptr<const TlsServerInfo>& info() const { return info_; }
  // As requested (for the "same spec" rule and for listings).
  const TlsServerSpec& spec() const { return spec_; }
  absl::Duration handshake_timeout() const { return info_->handshake_timeout; }
  // ALPN wire format (length-prefixed names), for the selection callback.
  const std::string& alpn_wire() const { return alpn_wire_; }

 private:
  TlsServerContext() = default;
  SSL_CTX* ctx_ = nullptr;
  std::shared_ptr<const TlsServerInfo> info_;
  std::string alpn_wire_;
  TlsServerSpec spec_;
};

// Client sessions for resumption, keyed by "name|host:port". Bounded
// (kTlsSessionCacheEntries, oldest dropped). Under the engine lock.
class TlsSessionCache final {
 public:
  TlsSessionCache() = default;
  ~TlsSessionCache();
  TlsSessionCache(const TlsSessionCache&) = delete;
  TlsSessionCache& operator=(const TlsSessionCache&) = delete;
  // Takes ownership of `session`.
  void Put(const std::string& key, SSL_SESSION* session);
  // Borrowed; null when none.
  SSL_SESSION* Get(const std::string& key) const;
  size_t size() const { return map_.size(); }

 private:
  std::list<std::string> order_;  // Oldest first.
  absl::flat_hash_map<std::string,
                      std::pair<SSL_SESSION*, std::list<std::string>::iterator>>
      map_;
};

class TlsClientContext final {
 public:
  // `host`: the dialled host (the default SNI and verified name when it is
  // a name; an IP literal is verified as an IP address and sends no SNI).
  static absl::StatusOr<std::shared_ptr<const TlsClientContext>> Create(
      const TlsClientSpec& spec, absl::string_view host);
  // The same options for another host: shares this context's SSL_CTX (its
  // trust store, certificate and key parsed once; the verified name is set
  // per session), so it costs a name check, not a context.
  absl::StatusOr<std::shared_ptr<const TlsClientContext>> ForHost(
      absl::string_view host) const;
  ~TlsClientContext();
  TlsClientContext(const TlsClientContext&) = delete;
  TlsClientContext& operator=(const TlsClientContext&) = delete;

  SSL_CTX* ctx() const { return ctx_; }
  const TlsClientSpec& spec() const { return spec_; }
  const std::string& name() const { return name_; }  // SNI / verified name.
  bool name_is_ip() const { return name_is_ip_; }
  absl::Duration handshake_timeout() const;

 private:
  TlsClientContext() = default;
  // name_ and name_is_ip_ from spec_ and the dialled host.
  absl::Status SetName(absl::string_view host);
  SSL_CTX* ctx_ = nullptr;
  TlsClientSpec spec_;
  std::string name_;
  bool name_is_ip_ = false;
};

// The outcome of one session call.
enum class TlsIoKind {
  kDone,       // Handshake finished / bytes moved (`bytes`).
  kWantRead,   // Wait for readability, then call again.
  kWantWrite,  // Wait for writability, then call again.
  kClosed,     // The peer's close_notify.
  kTruncated,  // The peer's FIN without close_notify.
  kError,      // `error` in words; `sys_errno` set for socket errors.
};
struct TlsIo {
  TlsIoKind kind = TlsIoKind::kDone;
  size_t bytes = 0;
  int sys_errno = 0;
  std::string error;
};

class TlsSession final {
 public:
  // Server side, on accepted socket `fd` (not owned).
  static absl::StatusOr<std::unique_ptr<TlsSession>> CreateServer(
      std::shared_ptr<const TlsServerContext> ctx, int fd);
  // Client side; `cache` (may be null) offers a session to resume and
  // keeps the new ones under `cache_key`. The cache must outlive it.
  static absl::StatusOr<std::unique_ptr<TlsSession>> CreateClient(
      std::shared_ptr<const TlsClientContext> ctx, int fd,
      TlsSessionCache* cache, std::string cache_key);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  TlsIo Handshake();
  bool handshake_done() const { return handshake_done_; }
  TlsIo Read(char* buf, size_t n);
  TlsIo Write(const char* data, size_t n);
  // Sends close_notify once (best effort: a full socket drops it).
  void SendCloseNotify();
  // Decrypted or undecrypted bytes held inside OpenSSL: readiness of the
  // socket will not announce them.
  bool HasPending() const;
  // The facts of the finished handshake (computed once).
  std::shared_ptr<const TlsInfo> Facts();
  absl::Duration handshake_timeout() const { return handshake_timeout_; }
  // For the new-session callback.
  TlsSessionCache* cache() const { return cache_; }
  const std::string& cache_key() const { return cache_key_; }

 private:
  TlsSession() = default;
  TlsIo Result(int ret, const char* op);
  SSL* ssl_ = nullptr;
  bool client_ = false;
  bool handshake_done_ = false;
  bool close_notify_sent_ = false;
  absl::Duration handshake_timeout_ = kDefaultTlsHandshakeTimeout;
  std::shared_ptr<const TlsServerContext> server_ctx_;
  std::shared_ptr<const TlsClientContext> client_ctx_;
  TlsSessionCache* cache_ = nullptr;
  std::string cache_key_;
  std::shared_ptr<const TlsInfo> facts_;
};

// Reads the facts of one PEM certificate (tests, ServerInfo).
absl::StatusOr<TlsCertificateInfo> DescribePemCertificate(
    absl::string_view pem);
const char* TlsVersionName(TlsVersion v);

}  // namespace sockagent

#endif  // SOCKAGENT_AGENT_TLS_H_
