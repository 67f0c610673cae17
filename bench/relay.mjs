// The floor: a raw `ws` relay that forwards each frame to the other sockets of its room, with no
// presence logic and no state. A late joiner learns nothing; nothing is encoded or decoded.
//   PORT=9000 node bench/relay.mjs

import http from 'node:http';

import { WebSocketServer } from 'ws';

const rooms = new Map();
const server = http.createServer((_, res) => res.end('relay\n'));
const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on('connection', (ws, req) => {
  const name = req.url;
  let room = rooms.get(name);
  if (!room) rooms.set(name, (room = new Set()));
  room.add(ws);
  ws.on('message', (data, binary) => {
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
