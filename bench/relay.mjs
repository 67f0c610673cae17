// The floor: a raw `ws` relay that forwards each frame to the other sockets of its room, with no
// presence logic and no state. A late joiner learns nothing; nothing is encoded or decoded.
//   PORT=9000 node bench/relay.mjs
// With RELAY_BATCH=1 it sends what came for a room in one turn of the event loop as one frame
// (a JSON array of the frames), encoded once and sent to every socket of the room, the sender's
// own frames among them, as rollcall's hub sends an event: the same relay, without the cost of a
// send per frame, so that the gap to it is what presence costs and not how frames are sent.

import http from 'node:http';

import { WebSocketServer } from 'ws';

const BATCH = process.env.RELAY_BATCH === '1';
const rooms = new Map();
/** Frames waiting for the end of this turn, by room. */
const waiting = new Map();

function queue(room, text) {
  if (!waiting.size) setImmediate(flush);
  const frames = waiting.get(room);
  if (frames) frames.push(text);
  else waiting.set(room, [text]);
}

function flush() {
  for (const [room, frames] of waiting) {
    const bytes = Buffer.from(`[${frames.join(',')}]`);
    for (const peer of room) if (peer.readyState === 1) peer.send(bytes, { binary: false });
  }
  waiting.clear();
}
const server = http.createServer((_, res) => res.end('relay\n'));
const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on('connection', (ws, req) => {
  const name = req.url;
  let room = rooms.get(name);
  if (!room) rooms.set(name, (room = new Set()));
  room.add(ws);
  ws.on('message', (data, binary) => {
    if (BATCH) {
      queue(room, data.toString());
      return;
    }
    for (const peer of room) if (peer !== ws && peer.readyState === 1) peer.send(data, { binary });
  });
  ws.on('close', () => {
    room.delete(ws);
    if (!room.size) rooms.delete(name);
  });
});
server.listen(Number(process.env.PORT ?? 9000), '127.0.0.1', () => {
  console.log(`relay listening on ${server.address().port}`);
});
