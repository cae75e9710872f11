// bench_load: load generators and reference servers on plain POSIX sockets
// (deliberately not our engine), driven by bench/run.py. Every mode prints
// machine-readable "key value" lines on stdout; errors go to stderr with a
// non-zero exit.
//
//   bench_load tcp-sink [--buf BYTES]
//       Listens on 127.0.0.1:0, prints "port P", then accepts connections one
//       after the other: blocking recv() into one buffer until EOF, close.
//   bench_load tcp-write HOST PORT --bytes N --chunk C
//       Connects, writes N bytes in writes of C bytes, shuts down writing and
//       waits for the peer to close; prints bytes, secs, bytes_per_sec.
//   bench_load udp-sink [--rcvbuf BYTES] [--idle-ms MS]
//       Binds 127.0.0.1:0, prints "port P", receives with recvmmsg until no
//       datagram came for MS after the first; prints datagrams and bytes.
//   bench_load udp-send HOST PORT --size S --secs D
//       Sends S-byte datagrams with sendto() as fast as it can for D
//       seconds; prints sent and secs.
//   bench_load hold HOST PORT --count N --sources FIRST-LAST
//       Opens N TCP connections from source addresses 127.0.0.FIRST..LAST,
//       sends a 16-byte probe on each and waits for every echo, prints
//       "ready N", then holds them until stdin reaches EOF.
//   bench_load accept-client HOST PORT --secs D --threads T --sources F-L
//       --expect BYTES: connect, read BYTES (the greeting) or EOF, close
//       with SO_LINGER 0; prints conns, secs, failures.
//   bench_load accept-server [--greeting TEXT]
//       The plain C++ accept loop: accept, send the greeting, close.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& what) {
  fprintf(stderr, "bench_load: %s: %s\n", what.c_str(), strerror(errno));
  exit(1);
}

[[noreturn]] void Usage(const std::string& what) {
  fprintf(stderr, "bench_load: %s (see the comment at the top of load.cc)\n",
          what.c_str());
  exit(2);
}

double Secs(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Flags of the form --name VALUE after the positional arguments.
struct Args {
  std::vector<std::string> positional;
  std::vector<std::pair<std::string, std::string>> flags;

  Args(int argc, char** argv, int first) {
    for (int i = first; i < argc; ++i) {
      std::string a = argv[i];
      if (a.rfind("--", 0) == 0) {
        if (i + 1 >= argc) Usage("flag " + a + " needs a value");
        flags.emplace_back(a.substr(2), argv[++i]);
      } else {
        positional.push_back(a);
      }
    }
  }
  std::string Get(const std::string& name, const std::string& def) const {
    for (const auto& [k, v] : flags)
      if (k == name) return v;
    return def;
  }
  long long Int(const std::string& name, long long def) const {
    std::string v = Get(name, "");
    if (v.empty()) return def;
    char* end = nullptr;
    long long n = strtoll(v.c_str(), &end, 10);
    if (*end != '\0' || n < 0) Usage("--" + name + " must be a number");
    return n;
  }
};

sockaddr_in Addr(const std::string& host, int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1)
    Usage("not an IPv4 address: " + host);
  return a;
}

// "2-9" -> 127.0.0.2 .. 127.0.0.9
std::vector<sockaddr_in> Sources(const std::string& spec) {
  std::vector<sockaddr_in> out;
  int first = 0, last = 0;
  if (spec.empty()) return out;
  if (sscanf(spec.c_str(), "%d-%d", &first, &last) != 2 || first < 1 ||
      last > 254 || first > last)
    Usage("--sources wants FIRST-LAST, e.g. 2-9");
  for (int i = first; i <= last; ++i)
    out.push_back(Addr("127.0.0." + std::to_string(i), 0));
  return out;
}

int TcpSocket() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Die("socket");
  return fd;
}

// Binds to `src` without reserving a port, so the kernel picks the port at
// connect() per (source, destination) pair: many sources give many more
// connections than one ephemeral port range.
void BindSource(int fd, const sockaddr_in& src) {
  int one = 1;
  setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&src), sizeof src) != 0)
    Die("bind source");
}

int Listen(int type) {
  int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
  if (fd < 0) Die("socket");
  sockaddr_in a = Addr("127.0.0.1", 0);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) Die("bind");
  if (type == SOCK_STREAM && listen(fd, 4096) != 0) Die("listen");
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  printf("port %d\n", ntohs(a.sin_port));
  fflush(stdout);
  return fd;
}

bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

int TcpSink(const Args& args) {
  std::vector<char> buf(static_cast<size_t>(args.Int("buf", 256 << 10)));
  int lfd = Listen(SOCK_STREAM);
  for (;;) {
    int fd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      Die("accept");
    }
    long long total = 0;
    auto start = Clock::now();
    for (;;) {
      ssize_t n = recv(fd, buf.data(), buf.size(), 0);
      if (n > 0) {
        total += n;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      break;
    }
    close(fd);
    printf("received %lld secs %.6f\n", total, Secs(start, Clock::now()));
    fflush(stdout);
  }
}

int TcpWrite(const Args& args) {
  if (args.positional.size() != 2) Usage("tcp-write HOST PORT");
  const long long total = args.Int("bytes", 1LL << 30);
  const size_t chunk = static_cast<size_t>(args.Int("chunk", 1 << 20));
  if (chunk == 0) Usage("--chunk must be positive");
  std::vector<char> buf(chunk, 'x');
  sockaddr_in to = Addr(args.positional[0], std::stoi(args.positional[1]));
  int fd = TcpSocket();
  auto start = Clock::now();
  if (connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0)
    Die("connect");
  long long left = total;
  while (left > 0) {
    size_t n = static_cast<size_t>(std::min<long long>(left, chunk));
    if (!WriteAll(fd, buf.data(), n)) Die("send");
    left -= static_cast<long long>(n);
  }
  // The end is when the receiver has read everything: it closes after EOF.
  shutdown(fd, SHUT_WR);
  char c;
  while (recv(fd, &c, 1, 0) > 0) {
  }
  const double secs = Secs(start, Clock::now());
  close(fd);
  printf("bytes %lld\nsecs %.6f\nbytes_per_sec %.0f\n", total, secs,
         static_cast<double>(total) / secs);
  return 0;
}

int UdpSink(const Args& args) {
  const int rcvbuf = static_cast<int>(args.Int("rcvbuf", 4 << 20));
  const int idle_ms = static_cast<int>(args.Int("idle-ms", 500));
  int fd = Listen(SOCK_DGRAM);
  // SO_RCVBUFFORCE goes past net.core.rmem_max when we are root.
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  constexpr int kBatch = 64;
  std::vector<char> bufs(kBatch * 2048);
  mmsghdr msgs[kBatch];
  iovec iov[kBatch];
  long long datagrams = 0, bytes = 0;
  pollfd p{fd, POLLIN, 0};
  for (;;) {
    int r = poll(&p, 1, datagrams == 0 ? -1 : idle_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) break;  // Quiet for idle_ms after traffic: the sender is done.
    for (int i = 0; i < kBatch; ++i) {
      iov[i] = {bufs.data() + i * 2048, 2048};
      msgs[i] = {};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int n = recvmmsg(fd, msgs, kBatch, MSG_DONTWAIT, nullptr);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      Die("recvmmsg");
    }
    datagrams += n;
    for (int i = 0; i < n; ++i) bytes += msgs[i].msg_len;
  }
  printf("datagrams %lld\nbytes %lld\n", datagrams, bytes);
  return 0;
}

int UdpSend(const Args& args) {
  if (args.positional.size() != 2) Usage("udp-send HOST PORT");
  const size_t size = static_cast<size_t>(args.Int("size", 1400));
  const double secs = std::stod(args.Get("secs", "2"));
  std::vector<char> buf(size, 'u');
  sockaddr_in to = Addr(args.positional[0], std::stoi(args.positional[1]));
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Die("socket");
  if (connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0)
    Die("connect");
  long long sent = 0;
  auto start = Clock::now();
  auto end = start + std::chrono::duration<double>(secs);
  for (;;) {
    for (int i = 0; i < 256; ++i) {
      // ECONNREFUSED from an earlier ICMP error is not a failed send.
      if (send(fd, buf.data(), size, 0) == static_cast<ssize_t>(size)) ++sent;
    }
    if (Clock::now() >= end) break;
  }
  printf("sent %lld\nsecs %.6f\n", sent, Secs(start, Clock::now()));
  return 0;
}

int Hold(const Args& args) {
  if (args.positional.size() != 2) Usage("hold HOST PORT");
  const long long count = args.Int("count", 1000);
  std::vector<sockaddr_in> sources = Sources(args.Get("sources", "2-9"));
  sockaddr_in to = Addr(args.positional[0], std::stoi(args.positional[1]));
  std::vector<int> fds;
  fds.reserve(static_cast<size_t>(count));
  const char probe[] = "probe-0123456789";
  constexpr size_t kProbe = sizeof probe - 1;
  for (long long i = 0; i < count; ++i) {
    int fd = TcpSocket();
    if (!sources.empty()) BindSource(fd, sources[i % sources.size()]);
    if (connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0)
      Die("connect #" + std::to_string(i));
    fds.push_back(fd);
  }
  // Every connection echoes its probe (send all first, then read all back).
  for (int fd : fds)
    if (!WriteAll(fd, probe, kProbe)) Die("send probe");
  long long echoed = 0;
  for (int fd : fds) {
    char got[kProbe];
    size_t have = 0;
    pollfd p{fd, POLLIN, 0};
    while (have < sizeof got) {
      if (poll(&p, 1, 10000) != 1) {
        errno = ETIMEDOUT;
        Die("no echo within 10 s");
      }
      ssize_t n = recv(fd, got + have, sizeof got - have, 0);
      if (n <= 0) Die("echo ended early");
      have += static_cast<size_t>(n);
    }
    if (memcmp(got, probe, kProbe) != 0) {
      fprintf(stderr, "bench_load: echo differs from the probe\n");
      return 1;
    }
    ++echoed;
  }
  printf("ready %lld\n", echoed);
  fflush(stdout);
  char c;
  while (read(0, &c, 1) > 0) {
  }
  for (int fd : fds) close(fd);
  return 0;
}

int AcceptClient(const Args& args) {
  if (args.positional.size() != 2) Usage("accept-client HOST PORT");
  const double secs = std::stod(args.Get("secs", "2"));
  const int threads = static_cast<int>(args.Int("threads", 2));
  const size_t expect = static_cast<size_t>(args.Int("expect", 24));
  std::vector<sockaddr_in> sources = Sources(args.Get("sources", "2-9"));
  const sockaddr_in to =
      Addr(args.positional[0], std::stoi(args.positional[1]));
  std::atomic<long long> conns{0}, failures{0};
  auto start = Clock::now();
  auto end = start + std::chrono::duration<double>(secs);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::vector<char> buf(expect + 1);
      long long mine = 0, bad = 0;
      size_t next = static_cast<size_t>(t);
      while (Clock::now() < end) {
        for (int k = 0; k < 32; ++k) {
          int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
          if (fd < 0) Die("socket");
          if (!sources.empty())
            BindSource(fd, sources[next++ % sources.size()]);
          linger l{1, 0};  // RST on close: no TIME_WAIT pile-up.
          setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
          if (connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) !=
              0) {
            ++bad;
            close(fd);
            continue;
          }
          size_t have = 0;
          while (have < expect) {
            ssize_t n = recv(fd, buf.data() + have, expect - have, 0);
            if (n <= 0) break;
            have += static_cast<size_t>(n);
          }
          close(fd);
          if (have == expect) {
            ++mine;
          } else {
            ++bad;
          }
        }
      }
      conns += mine;
      failures += bad;
    });
  }
  for (auto& th : pool) th.join();
  printf("conns %lld\nfailures %lld\nsecs %.6f\n", conns.load(),
         failures.load(), Secs(start, Clock::now()));
  return 0;
}

int AcceptServer(const Args& args) {
  const std::string greeting = args.Get("greeting", "Thank you for connecting");
  int lfd = Listen(SOCK_STREAM);
  for (;;) {
    int fd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      Die("accept");
    }
    send(fd, greeting.data(), greeting.size(), MSG_NOSIGNAL);
    close(fd);
  }
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2) Usage("which mode?");
  const std::string mode = argv[1];
  Args args(argc, argv, 2);
  if (mode == "tcp-sink") return TcpSink(args);
  if (mode == "tcp-write") return TcpWrite(args);
  if (mode == "udp-sink") return UdpSink(args);
  if (mode == "udp-send") return UdpSend(args);
  if (mode == "hold") return Hold(args);
  if (mode == "accept-client") return AcceptClient(args);
  if (mode == "accept-server") return AcceptServer(args);
  Usage("unknown mode " + mode);
}
