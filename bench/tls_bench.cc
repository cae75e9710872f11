// TLS throughput reference for the agent's TLS discard server (issue 16):
//
//   bench_tls sink CERT KEY          # blocking SSL_read sink on 127.0.0.1:0;
//                                    # prints "port N", then "bytes B" at EOF
//   bench_tls send PORT MIB          # one client, 1 MiB SSL_writes of
//                                    # AES-128-GCM (TLS 1.3); prints GB/s
//
// The sink is the plain OpenSSL reference ("a small blocking SSL_read
// loop"); `send` drives it and the agent alike, in the same run.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

int Die(const char* what) {
  std::fprintf(stderr, "bench_tls: %s\n", what);
  ERR_print_errors_fp(stderr);
  return 1;
}

int Sink(const char* cert, const char* key) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
    return Die("cert/key");
  }
  const int ls = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      listen(ls, 16) != 0 ||
      getsockname(ls, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    return Die("listen");
  }
  std::printf("port %d\n", ntohs(a.sin_port));
  std::fflush(stdout);
  std::vector<char> buf(256 << 10);
  while (true) {
    const int fd = accept(ls, nullptr, nullptr);
    if (fd < 0) return Die("accept");
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    unsigned long long total = 0;
    if (SSL_accept(ssl) == 1) {
      size_t n = 0;
      while (SSL_read_ex(ssl, buf.data(), buf.size(), &n) == 1) total += n;
    }
    std::printf("bytes %llu\n", total);
    std::fflush(stdout);
    SSL_free(ssl);
    close(fd);
  }
}

int Send(int port, long mib) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256");
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    return Die("connect");
  }
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  if (SSL_connect(ssl) != 1) return Die("handshake");
  std::vector<char> block(1 << 20, 'x');
  const auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < mib; ++i) {
    size_t off = 0;
    while (off < block.size()) {
      size_t n = 0;
      if (SSL_write_ex(ssl, block.data() + off, block.size() - off, &n) != 1) {
        return Die("write");
      }
      off += n;
    }
  }
  SSL_shutdown(ssl);
  shutdown(fd, SHUT_WR);
  char c;
  while (read(fd, &c, 1) > 0) {
  }  // The receiver's end: all bytes were taken.
  const double s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  std::printf("%s %.3f GB/s (%ld MiB in %.2f s)\n",
              SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)),
              mib * 1048576.0 / s / 1e9, mib, s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);  // OpenSSL writes with write(2).
  if (argc == 4 && std::strcmp(argv[1], "sink") == 0) {
    return Sink(argv[2], argv[3]);
  }
  if (argc == 4 && std::strcmp(argv[1], "send") == 0) {
    return Send(std::atoi(argv[2]), std::atol(argv[3]));
  }
  std::fprintf(stderr, "usage: bench_tls sink CERT KEY | send PORT MIB\n");
  return 2;
}
