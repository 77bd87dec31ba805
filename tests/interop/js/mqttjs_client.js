#!/usr/bin/env node
// A small MQTT.js (npm "mqtt") client driven by the interop tests.
//
//   node mqttjs_client.js '<json options>'
//
// options: { port, mode: "sub" | "pub" | "will", clientId, protocolVersion (4 | 3),
//            clean, topic, qos, count, messages: [{topic, payload, qos, retain}],
//            will: {topic, payload, qos, retain}, timeoutMs }
// It prints one JSON object per line on stdout:
//   {"event":"connected","sessionPresent":false}
//   {"event":"subscribed","granted":[1]}
//   {"event":"message","topic":"a","payload":"<base64>","qos":1,"retain":false,"dup":false}
//   {"event":"published","count":3}
//   {"event":"done"}  then exits 0;  {"event":"error","message":...} and exit 1 on failure.
// Every mode is bounded by timeoutMs (default 10 s).
'use strict'

const mqtt = require('mqtt')

const opts = JSON.parse(process.argv[2] || '{}')
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const fail = (message) => { out({ event: 'error', message: String(message) }); process.exit(1) }

setTimeout(() => fail(`timeout after ${opts.timeoutMs || 10000} ms`), opts.timeoutMs || 10000).unref()

const connectOpts = {
  clientId: opts.clientId || `mqttjs-${process.pid}`,
  protocolVersion: opts.protocolVersion || 4,
  clean: opts.clean !== false,
  reconnectPeriod: 0, // a failed connection must fail the test, not retry silently
  connectTimeout: 5000,
  keepalive: 30
}
if (connectOpts.protocolVersion === 3) connectOpts.protocolId = 'MQIsdp'
if (opts.will) {
  connectOpts.will = {
    topic: opts.will.topic,
    payload: Buffer.from(opts.will.payload || ''),
    qos: opts.will.qos || 0,
    retain: !!opts.will.retain
  }
}

const client = mqtt.connect(`mqtt://127.0.0.1:${opts.port}`, connectOpts)
client.on('error', (err) => { if (!client.__done) fail(err && err.message) })
client.on('close', () => { if (!client.__done) fail('connection closed unexpectedly') })

// MQTT.js emits 'message' before it writes the PUBACK (QoS 1) or while the QoS 2
// flow is still running (PUBREL/PUBCOMP to come): give the acknowledgements time
// to be exchanged before the DISCONNECT, so the broker sees a completed flow.
const finish = () => {
  if (client.__done) return
  client.__done = true
  setTimeout(() => {
    client.end(false, {}, () => { out({ event: 'done' }); process.exit(0) })
  }, 300)
}

client.on('connect', (connack) => {
  out({ event: 'connected', sessionPresent: !!connack.sessionPresent })
  if (opts.mode === 'sub') return runSub()
  if (opts.mode === 'pub') return runPub()
  if (opts.mode === 'will') return // the test kills this process
  fail(`unknown mode ${opts.mode}`)
})

function runSub () {
  let received = 0
  const want = opts.count || 1
  client.on('message', (topic, payload, packet) => {
    out({
      event: 'message',
      topic,
      payload: payload.toString('base64'),
      qos: packet.qos,
      retain: !!packet.retain,
      dup: !!packet.dup
    })
    received += 1
    if (received >= want) finish()
  })
  const topics = Array.isArray(opts.topic) ? opts.topic : [opts.topic]
  const spec = {}
  for (const t of topics) spec[t] = { qos: opts.qos || 0 }
  client.subscribe(spec, (err, granted) => {
    if (err) return fail(err.message)
    out({ event: 'subscribed', granted: granted.map((g) => g.qos) })
  })
}

function runPub () {
  const messages = opts.messages || []
  let done = 0
  if (messages.length === 0) return finish()
  // Publish in order; MQTT.js completes each QoS flow (PUBACK / PUBREC-PUBREL-PUBCOMP)
  // before calling back.
  const next = (i) => {
    if (i >= messages.length) return
    const m = messages[i]
    client.publish(m.topic, Buffer.from(m.payload, m.encoding || 'utf8'),
      { qos: m.qos || 0, retain: !!m.retain }, (err) => {
        if (err) return fail(err.message)
        done += 1
        if (done === messages.length) {
          out({ event: 'published', count: done })
          finish()
        } else {
          next(i + 1)
        }
      })
  }
  next(0)
}
