#!/usr/bin/env node
// The seed's scenario over the sockagent API, from Node.js.
//
// What scripts/demo.sh shows with sockctl, done here with @grpc/grpc-js
// (pure-JS gRPC) and @grpc/proto-loader (the .proto is read at run time, no
// generated code): the host's name, getaddrinfo forwards and backwards, then
// the classic "Thank you for connecting" server and its one-shot client --
// both on the agent's host, driven from here -- then the connections it saw,
// and cleanup. Copy it as the start of your own client.
//
//   (cd examples/node && npm ci)
//   node examples/node/seed_scenario.js --agent 127.0.0.1:7878 \
//       --token-file /path/to/token
//
// Exit status: 0 when every step worked, 1 when a call failed (the gRPC
// status and the agent's message are printed), 2 for bad arguments.
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const {parseArgs} = require('node:util');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// proto/ is the import root: the API is "sockagent/v1/agent.proto".
const PROTO_ROOT = path.join(__dirname, '..', '..', 'proto');

// Where sockagentd listens without --listen (proto/local_agent_socket.h);
// SOCKAGENT_ADDR wins, as for sockctl.
function defaultAgentAddress() {
  if (process.env.SOCKAGENT_ADDR) return process.env.SOCKAGENT_ADDR;
  const uid = os.userInfo().uid;
  let dir = `/tmp/sockagent-${uid}`;
  if (uid === 0) {
    dir = '/run/sockagent';
  } else if ((process.env.XDG_RUNTIME_DIR || '').startsWith('/')) {
    dir = `${process.env.XDG_RUNTIME_DIR}/sockagent`;
  }
  return `unix:${dir}/sockagentd.sock`;
}

const USAGE = `usage: seed_scenario.js [--agent HOST:PORT|unix:/PATH] [--token-file FILE]
                         [--greeting TEXT] [--label KEY=VALUE] [--timeout SECONDS]

The seed's 'Thank you for connecting' scenario over the sockagent gRPC API.

  --agent       agent address (default: $SOCKAGENT_ADDR, else the agent's
                default UNIX socket)
  --token-file  file holding the agent's bearer token (default:
                $SOCKAGENT_TOKEN; none on the default UNIX socket)
  --greeting    what the server sends each client ('Thank you for connecting')
  --label       KEY=VALUE put on everything this run starts, and used to
                list and clean it up (demo=seed)
  --timeout     deadline of each call in seconds (10)`;

function parseArguments() {
  let values;
  try {
    ({values} = parseArgs({
      options: {
        'agent': {type: 'string', default: defaultAgentAddress()},
        'token-file': {type: 'string'},
        'greeting': {type: 'string', default: 'Thank you for connecting'},
        'label': {type: 'string', default: 'demo=seed'},
        'timeout': {type: 'string', default: '10'},
        'help': {type: 'boolean', short: 'h'},
      },
    }));
  } catch (e) {
    console.error(`${e.message}\n\n${USAGE}`);
    process.exit(2);
  }
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const eq = values.label.indexOf('=');
  const timeout = Number(values.timeout);
  if (eq < 1 || !(timeout > 0)) {
    console.error(`--label must be KEY=VALUE and --timeout positive\n\n${USAGE}`);
    process.exit(2);
  }
  return {
    ...values,
    timeout,
    labels: {[values.label.slice(0, eq)]: values.label.slice(eq + 1)},
  };
}

// The bearer token: --token-file, else $SOCKAGENT_TOKEN, else none (an agent
// on its default UNIX socket needs none: the socket is 0600).
function readToken(file) {
  if (file) return fs.readFileSync(file, 'ascii').trim();
  return process.env.SOCKAGENT_TOKEN || '';
}

function seconds(s) {
  return {seconds: String(Math.floor(s)), nanos: Math.round((s % 1) * 1e9)};
}

function addressText(a) {
  if (a.family === 'FAMILY_UNIX') return `unix:${a.unixPath}`;
  if (a.family === 'FAMILY_IPV6') return `[${a.ip}]:${a.port}`;
  return `${a.ip}:${a.port}`;
}

// CLOSE_REASON_PEER_CLOSED -> "peer closed", as sockctl's tables say.
function enumWord(name, prefix) {
  return name.slice(prefix.length).toLowerCase().replaceAll('_', ' ');
}

async function main() {
  const args = parseArguments();
  const token = readToken(args['token-file']);

  // enums as names, 64-bit integers as strings (as in protobuf's JSON),
  // bytes as Buffers, lowerCamelCase field names, unset fields as defaults.
  const definition = protoLoader.loadSync('sockagent/v1/agent.proto', {
    includeDirs: [PROTO_ROOT],
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const {SocketAgent} = grpc.loadPackageDefinition(definition).sockagent.v1;
  // TLS: grpc.credentials.createSsl(fs.readFileSync('ca.pem')) instead.
  const agent = new SocketAgent(args.agent, grpc.credentials.createInsecure());

  // Every call carries the token as `authorization: Bearer ...` metadata
  // and a deadline.
  const metadata = new grpc.Metadata();
  if (token) metadata.set('authorization', `Bearer ${token}`);
  const call = (method, request) => new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + args.timeout * 1000);
    agent[method](request, metadata, {deadline}, (err, response) => {
      if (err) reject(err); else resolve(response);
    });
  });

  try {
    // socket.gethostname(), and which agent answered.
    const host = await call('GetHostInfo', {});
    console.log(`hostname: ${host.hostname} ` +
                `(sockagentd ${host.agentVersion}, pid ${host.pid})`);

    // socket.getaddrinfo('localhost', 'www')
    let answer = await call('Resolve', {host: 'localhost', service: 'www'});
    for (const e of answer.entries) {
      console.log(`resolve localhost www: ${enumWord(e.family, 'FAMILY_')} ` +
                  `${e.address} port ${e.port} (${e.protocolName})`);
    }

    // socket.getnameinfo(('127.0.0.1', 80), 0)
    answer = await call('Resolve',
                        {host: '127.0.0.1', service: '80', reverse: true});
    console.log(`reverse 127.0.0.1 80: ${answer.reverseHost} ` +
                `${answer.reverseService}`);

    try {
      await runGreetingServer(call, args.greeting, args.labels);
    } finally {
      // Clean up by label, even after a failure: a selector that matches
      // nothing is not an error.
      const stopped = await call('StopServer',
          {labelSelector: args.labels, closeConnections: true});
      const closed = await call('CloseConnection',
                                {labelSelector: args.labels});
      console.log(`cleanup: ${stopped.serversStopped} server(s) stopped, ` +
                  `${closed.connectionsClosed} connection(s) closed`);
    }
  } finally {
    agent.close();
  }
}

async function runGreetingServer(call, greeting, labels) {
  // The seed's server: bind port 0 (the agent picks one), send the greeting
  // to every client, then close.
  const {server} = await call('StartServer', {
    transport: 'TRANSPORT_TCP',
    bind: {host: '127.0.0.1', port: 0},
    behavior: {greeting: {data: Buffer.from(greeting), closeAfter: true}},
    labels,
  });
  const bound = server.localAddresses[0];
  console.log(`server ${server.id}: greeting on ${addressText(bound)}`);

  // The seed's one-shot client, opened by the agent on its own host (so
  // this works for a remote agent too): connect, read until the server
  // closes, close.
  const {connection: conn} = await call('OpenClient', {
    transport: 'TRANSPORT_TCP',
    remote: {host: bound.ip, port: bound.port},
    connectTimeout: seconds(5),
    labels,
  });
  console.log(`client ${conn.id}: ${addressText(conn.local)} -> ` +
              `${addressText(conn.remote)}`);
  const chunks = [];
  for (;;) {
    // Waits up to 2 s for bytes; endOfStream once the server closed and
    // every byte was taken.
    const chunk = await call('Receive',
                             {connectionId: conn.id, wait: seconds(2)});
    chunks.push(chunk.data);
    if (chunk.endOfStream) break;
    if (chunk.data.length === 0) throw new Error('no end of stream within 2 s');
  }
  console.log(`client ${conn.id} received: ${Buffer.concat(chunks)}`);
  await call('CloseConnection', {id: conn.id});

  // Both ends, closed, stay listable (with why) in a bounded history.
  const {connections} = await call('ListConnections',
                                   {labelSelector: labels, includeClosed: true});
  for (const c of connections) {
    const state = c.closeReason === 'CLOSE_REASON_UNSPECIFIED' ?
        'open' : enumWord(c.closeReason, 'CLOSE_REASON_');
    console.log(`connection ${c.id} ${enumWord(c.origin, 'ORIGIN_')} ` +
                `${addressText(c.local)} -> ${addressText(c.remote)}: ` +
                `${state}, ${c.counters.bytesReceived} bytes in, ` +
                `${c.counters.bytesSent} out`);
  }

  const {servers} = await call('ListServers', {labelSelector: labels});
  for (const s of servers) {
    console.log(`server ${s.id}: ${s.counters.connectionsAccepted} accepted, ` +
                `${s.counters.bytesSent} bytes sent`);
  }
}

main().catch((e) => {
  const name = path.basename(process.argv[1]);
  if (e.code !== undefined && e.details !== undefined) {
    // A gRPC error: e.code is a grpc.status number, e.details the agent's
    // message, e.g. "bind 0.0.0.0:80: permission denied".
    console.error(`${name}: ${grpc.status[e.code]}: ${e.details}`);
  } else {
    console.error(`${name}: ${e.message}`);
  }
  process.exitCode = 1;
});
