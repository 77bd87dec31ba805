// aedes (Node) on one TCP port, as compare_brokers.py runs it: in-memory persistence (aedes's
// default), anonymous clients, no logging. Usage: node aedes_broker.mjs PORT [HOST]
import { createServer } from 'node:net'
import { Aedes } from 'aedes'

const port = Number(process.argv[2] || 1883)
const host = process.argv[3] || '127.0.0.1'
const broker = await Aedes.createBroker()
const server = createServer(broker.handle)
server.listen(port, host, () => {
  console.log(`aedes listening on ${host}:${port}`)
})
const stop = () => server.close(() => broker.close(() => process.exit(0)))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
