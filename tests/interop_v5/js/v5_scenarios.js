// MQTT.js (npm "mqtt", protocolVersion 5) scenarios for tests/interop_v5/test_interop_v5_mqttjs.py.
//
//   node v5_scenarios.js <port> <scenario>
//
// Prints one JSON object per line: {"event": "ready"} when the Python side may
// act, then the observations the test asserts on, then {"event": "done"}.
// Every scenario ends within a few seconds (a global timer exits with code 3).
'use strict';

const mqtt = require('mqtt');

const port = Number(process.argv[2]);
const scenario = process.argv[3];
const url = `mqtt://127.0.0.1:${port}`;

setTimeout(() => { emit({ event: 'timeout' }); process.exit(3); }, 15000).unref();

function emit(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }

function connect(opts) {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(url, Object.assign({
      protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000, keepalive: 30,
    }, opts));
    c.once('connect', (connack) => resolve([c, connack]));
    c.once('error', reject);
  });
}

function subscribe(c, topic, opts) {
  return new Promise((resolve, reject) =>
    c.subscribe(topic, opts, (err, granted) => (err ? reject(err) : resolve(granted))));
}

function publish(c, topic, payload, opts) {
  return new Promise((resolve, reject) =>
    c.publish(topic, payload, opts, (err, pkt) => (err ? reject(err) : resolve(pkt))));
}

function end(c) { return new Promise((resolve) => c.end(false, {}, resolve)); }

function describe(topic, payload, packet) {
  const p = packet.properties || {};
  return {
    event: 'message', topic, payload: payload.toString('utf8'), qos: packet.qos,
    retain: packet.retain,
    properties: {
      userProperties: p.userProperties, contentType: p.contentType,
      responseTopic: p.responseTopic,
      correlationData: p.correlationData ? Buffer.from(p.correlationData).toString('hex') : undefined,
      payloadFormatIndicator: p.payloadFormatIndicator,
      messageExpiryInterval: p.messageExpiryInterval,
      subscriptionIdentifier: p.subscriptionIdentifier,
      topicAlias: p.topicAlias,
    },
  };
}

function collect(c, ms) {
  const got = [];
  c.on('message', (topic, payload, packet) => got.push(describe(topic, payload, packet)));
  return new Promise((resolve) => setTimeout(() => resolve(got), ms));
}

const scenarios = {
  // A JS subscriber with a subscription identifier receives a JS publication with properties.
  async properties() {
    const [sub] = await connect({ clientId: 'js-prop-sub' });
    const granted = await subscribe(sub, 'js/prop', { qos: 1, properties: { subscriptionIdentifier: 9 } });
    emit({ event: 'granted', granted: granted.map((g) => g.qos) });
    const [pub] = await connect({ clientId: 'js-prop-pub' });
    const got = collect(sub, 800);
    await publish(pub, 'js/prop', 'héllo', {
      qos: 1,
      properties: {
        payloadFormatIndicator: true, contentType: 'text/plain', responseTopic: 'js/reply',
        correlationData: Buffer.from([0, 1, 2, 255]), messageExpiryInterval: 60,
        userProperties: { a: '1', b: ['2', '3'] },
      },
    });
    for (const m of await got) emit(m);
    await end(pub); await end(sub);
  },

  // Python publishes with properties; the JS subscriber reports what it got.
  async receive() {
    const [sub] = await connect({ clientId: 'js-recv' });
    await subscribe(sub, 'js/recv', { qos: 1 });
    const got = collect(sub, 1500);
    emit({ event: 'ready' });
    for (const m of await got) emit(m);
    await end(sub);
  },

  // No Local, Retain As Published, Retain Handling 2.
  async options() {
    const [seed] = await connect({ clientId: 'js-opt-seed' });
    await publish(seed, 'js/opt/stored', 'stored', { qos: 1, retain: true });
    const [c] = await connect({ clientId: 'js-opt' });
    await subscribe(c, 'js/opt/#', { qos: 1, nl: true, rap: true, rh: 2 });
    const got = collect(c, 800);
    await publish(c, 'js/opt/own', 'own', { qos: 1 });
    await publish(seed, 'js/opt/live', 'live', { qos: 1, retain: true });
    for (const m of await got) emit(m);
    await end(seed); await end(c);
  },

  // Requester side of request/response; Python is the responder.
  async request() {
    const [c] = await connect({ clientId: 'js-req' });
    await subscribe(c, 'js/rr/reply', { qos: 1 });
    const got = collect(c, 1500);
    await publish(c, 'js/rr/service', 'question', {
      qos: 1, properties: { responseTopic: 'js/rr/reply', correlationData: Buffer.from('corr-7') },
    });
    for (const m of await got) emit(m);
    await end(c);
  },

  // The client assigns topic aliases itself (server allows them) and accepts the server's.
  async alias() {
    const [sub] = await connect({ clientId: 'js-alias-sub', properties: { topicAliasMaximum: 3 } });
    await subscribe(sub, 'js/alias/#', { qos: 0 });
    const [pub, connack] = await connect({ clientId: 'js-alias-pub', autoAssignTopicAlias: true });
    emit({ event: 'connack', topicAliasMaximum: (connack.properties || {}).topicAliasMaximum });
    const got = collect(sub, 800);
    for (let i = 0; i < 4; i++) await publish(pub, 'js/alias/t', `m${i}`, { qos: 1 });
    for (const m of await got) emit(m);
    await end(pub); await end(sub);
  },

  // A persistent session: subscribe, go away, Python publishes, come back.
  async session() {
    const opts = { clientId: 'js-sess', clean: false, properties: { sessionExpiryInterval: 60 } };
    const [a, first] = await connect(opts);
    emit({ event: 'connack', sessionPresent: first.sessionPresent });
    await subscribe(a, 'js/sess', { qos: 1 });
    await end(a);
    emit({ event: 'ready' });
    await new Promise((resolve) => process.stdin.once('data', resolve));
    const got = [];
    const c = mqtt.connect(url, Object.assign({ protocolVersion: 5, reconnectPeriod: 0 }, opts));
    c.on('message', (topic, payload, packet) => got.push(describe(topic, payload, packet)));
    const connack = await new Promise((resolve, reject) => {
      c.once('connect', resolve); c.once('error', reject);
    });
    emit({ event: 'connack', sessionPresent: connack.sessionPresent });
    await new Promise((resolve) => setTimeout(resolve, 800));
    for (const m of got) emit(m);
    await end(c);
  },

  // An empty client id gets an Assigned Client Identifier.
  async assigned() {
    const [c, connack] = await connect({ clientId: '' });
    emit({ event: 'connack', properties: connack.properties || {} });
    await end(c);
  },

  // A will with delay and properties; the connection is then cut without DISCONNECT.
  async will() {
    const [c] = await connect({
      clientId: 'js-will',
      properties: { sessionExpiryInterval: 60 },
      will: {
        topic: 'js/will', payload: Buffer.from('js gone'), qos: 1, retain: false,
        properties: { willDelayInterval: 1, contentType: 'text/plain', userProperties: { from: 'mqtt.js' } },
      },
    });
    emit({ event: 'ready' });
    c.stream.destroy();
  },

  // A second connection with the same client id: the first gets DISCONNECT 0x8E.
  async takeover() {
    const [first] = await connect({ clientId: 'js-take' });
    const seen = new Promise((resolve) => first.once('disconnect', (packet) => resolve(packet)));
    const [second] = await connect({ clientId: 'js-take', clean: false, properties: { sessionExpiryInterval: 30 } });
    const packet = await Promise.race([seen, new Promise((resolve) => setTimeout(() => resolve(null), 3000))]);
    emit({ event: 'disconnect', reasonCode: packet ? packet.reasonCode : null });
    first.end(true);
    await end(second);
  },

  // Two members of one share group.
  async shared() {
    const [a] = await connect({ clientId: 'js-sh-a' });
    const [b] = await connect({ clientId: 'js-sh-b' });
    await subscribe(a, '$share/jsg/js/sh', { qos: 1 });
    await subscribe(b, '$share/jsg/js/sh', { qos: 1 });
    const ga = collect(a, 1500);
    const gb = collect(b, 1500);
    emit({ event: 'ready' });
    for (const m of await ga) emit(Object.assign(m, { member: 'a' }));
    for (const m of await gb) emit(Object.assign(m, { member: 'b' }));
    await end(a); await end(b);
  },
};

(async () => {
  if (!scenarios[scenario]) { emit({ event: 'error', error: `no scenario ${scenario}` }); process.exit(2); }
  try {
    await scenarios[scenario]();
    emit({ event: 'done' });
    process.exit(0);
  } catch (err) {
    emit({ event: 'error', error: String(err && err.stack || err) });
    process.exit(1);
  }
})();
