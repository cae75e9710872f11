# sockagent image: sockagentd (entrypoint) and sockctl, built from Debian 12
# packages only. Multi-stage: the runtime image carries the shared libraries,
# not the compilers.
#
#   docker build -t sockagent .
#   head -c 32 /dev/urandom | base64 > agent.token && chmod 0644 agent.token
#   docker run --rm -p 127.0.0.1:7878:7878 \
#     -v "$PWD/agent.token:/run/secrets/sockagent_token:ro" sockagent
#   SOCKAGENT_TOKEN=$(cat agent.token) sockctl --agent 127.0.0.1:7878 info
#
# The agent runs as uid 10001: the token file must be readable by it (mode
# 0644, or chown 10001 and 0600; the agent warns about the first).
FROM debian:12 AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake ninja-build g++ pkg-config libgrpc++-dev protobuf-compiler-grpc \
      libprotobuf-dev protobuf-compiler libabsl-dev libc-ares-dev libasio-dev \
      libcli11-dev libssl-dev libyaml-cpp-dev libmicrohttpd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY proto proto
COPY agent agent
COPY service service
COPY cli cli
# Only the two binaries, no tests, no debug info (the binaries are stripped
# anyway, and -g makes every gRPC-heavy file slower to compile): -O2, as
# RelWithDebInfo. JOBS caps the compile jobs (empty: ninja's default, cores
# + 2); tests/compose passes 2.
ARG JOBS=
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
      -DSOCKAGENT_BUILD_TESTS=OFF -DSOCKAGENT_BUILD_BENCH=OFF \
 && cmake --build /build --target sockagentd sockctl ${JOBS:+-j "$JOBS"} \
 && strip /build/service/sockagentd /build/cli/sockctl

FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc++1.51 libgrpc29 libprotobuf32 libabsl20220623 libmicrohttpd12 \
      libyaml-cpp0.7 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin \
      sockagent
COPY --from=build /build/service/sockagentd /build/cli/sockctl /usr/local/bin/
USER sockagent
EXPOSE 7878
# The health service answers without a token, so the check needs none.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["sockctl", "--agent", "127.0.0.1:7878", "--timeout", "2s", "health"]
ENTRYPOINT ["sockagentd"]
# A container's loopback is useless to other containers, so the image
# listens on every address, which requires authentication: a bearer token
# from the secret file below (the agent refuses to start without it). Add
# --tls-cert/--tls-key for TLS when the network is not trusted.
CMD ["--listen", "0.0.0.0:7878", "--token-file", "/run/secrets/sockagent_token"]
