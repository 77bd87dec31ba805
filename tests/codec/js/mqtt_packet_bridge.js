#!/usr/bin/env node
// JSON-lines bridge to MQTT.js's mqtt-packet, driven by tests/codec/test_interop_mqttpacket.py.
//
// One request per stdin line, one reply per stdout line, so one node process serves a whole
// test module. Buffers travel as {"$b": "<hex>"} in both directions.
//
//   {"op": "generate", "version": 4|5, "packet": {...}}  -> {"ok": true, "hex": "..."}
//   {"op": "parse", "version": 3|4|5, "hex": "..."}      -> {"ok": true, "packets": [...]}
//   any failure                                          -> {"ok": false, "error": "..."}
'use strict'

const readline = require('readline')
const mqtt = require('mqtt-packet')

function revive (value) {
  if (Array.isArray(value)) return value.map(revive)
  if (value && typeof value === 'object') {
    if (typeof value.$b === 'string') return Buffer.from(value.$b, 'hex')
    const out = Object.create(null) // a key like "__proto__" stays a plain key
    for (const [k, v] of Object.entries(value)) out[k] = revive(v)
    return out
  }
  return value
}

function plain (value) {
  if (Buffer.isBuffer(value)) return { $b: value.toString('hex') }
  if (Array.isArray(value)) return value.map(plain)
  if (value && typeof value === 'object') {
    const out = Object.create(null)
    for (const [k, v] of Object.entries(value)) {
      if (v !== undefined) out[k] = plain(v)
    }
    return out
  }
  return value
}

function parse (version, buf) {
  const parser = mqtt.parser({ protocolVersion: version })
  const packets = []
  let error = null
  parser.on('packet', (p) => packets.push(plain(p)))
  parser.on('error', (e) => { if (!error) error = e })
  parser.parse(buf)
  if (error) throw error
  if (parser._list && parser._list.length) throw new Error(`${parser._list.length} trailing bytes not parsed`)
  return packets
}

function handle (req) {
  if (req.op === 'generate') {
    const buf = mqtt.generate(revive(req.packet), { protocolVersion: req.version })
    return { ok: true, hex: buf.toString('hex') }
  }
  if (req.op === 'parse') {
    return { ok: true, packets: parse(req.version, Buffer.from(req.hex, 'hex')) }
  }
  if (req.op === 'version') {
    return { ok: true, version: require('mqtt-packet/package.json').version, node: process.version }
  }
  throw new Error(`unknown op ${req.op}`)
}

const rl = readline.createInterface({ input: process.stdin, terminal: false })
rl.on('line', (line) => {
  let reply
  try {
    reply = handle(JSON.parse(line))
  } catch (e) {
    reply = { ok: false, error: String(e && e.message ? e.message : e) }
  }
  process.stdout.write(JSON.stringify(reply) + '\n')
})
rl.on('close', () => process.exit(0))
