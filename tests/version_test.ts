// Protocol versions: a client of protocol 2 (one tunnel per hello) gets an "upgrade
// the client" error from this server, and this client an "upgrade the server" one
// from a server of protocol 2, each at once and then a close: never a hang.

import assert from "node:assert/strict";
import { concatBytes, latin1Bytes } from "../lib/bytes.ts";
import { TunnelError } from "../lib/errors.ts";
import { ByteReader, FRAME_READER_CAPACITY } from "../lib/io.ts";
import { decodeClientFrame, PROTOCOL_VERSION, UPGRADE_RESPONSE } from "../lib/protocol.ts";
import {
  decode,
  HOST,
  nextFrame,
  openTestTunnel,
  rawApp,
  rawClient,
  readAll,
  spawnCli,
  startTestServer,
  T,
  writeAllTo,
} from "./helpers.ts";

/** A frame as protocol 2 wrote it (a 4-byte length, then JSON), from its JSON text. */
const v2Frame = (json: string): Uint8Array => {
  const body = latin1Bytes(json);
  const frame = new Uint8Array(4 + body.length);
  new DataView(frame.buffer).setUint32(0, body.length);
  frame.set(body, 4);
  return frame;
};

Deno.test({
  name: "a protocol 2 client's hello and attach get a version error saying to upgrade the client",
  ...T,
  async fn() {
    await using server = await startTestServer();
    for (
      const json of [
        '{"type":"hello","version":2,"subdomain":"demo","lease":"v1.demo.n.1.m"}',
        '{"type":"attach","version":2,"tunnel":"t","secret":"s"}',
      ]
    ) {
      const { conn, reader, upgraded } = await rawClient(server.addr.port, v2Frame(json));
      try {
        assert.ok(upgraded);
        const frame = await nextFrame(reader);
        assert.equal(frame?.type, "error");
        if (frame?.type !== "error") continue;
        assert.equal(frame.code, "version");
        assert.equal(frame.version, PROTOCOL_VERSION);
        assert.match(
          frame.message,
          new RegExp(
            `speaks Gotunnel protocol ${PROTOCOL_VERSION} and the client 2; upgrade the client`,
          ),
        );
        assert.equal((await readAll(conn)).length, 0, "then closed"); // no hang: the test's timeout
      } finally {
        conn.close();
      }
    }
    assert.equal(server.tunnelCount, 0);
  },
});

/**
 * A server of protocol 2: reads the upgrade and the first frame, answers as
 * protocol 2 did (a version error without its own version) and closes.
 */
function protocol2Server() {
  return rawApp(async (conn) => {
    const reader = new ByteReader(conn, FRAME_READER_CAPACITY);
    while (!decode(reader.buffered).includes("\r\n\r\n")) {
      if (!await reader.fill()) return;
    }
    reader.consume(decode(reader.buffered).indexOf("\r\n\r\n") + 4);
    const first = await reader.readFrame(decodeClientFrame);
    const version = first && "version" in first ? first.version : "?";
    await writeAllTo(
      conn,
      concatBytes(
        UPGRADE_RESPONSE,
        v2Frame(JSON.stringify({
          type: "error",
          code: "version",
          message:
            `Cannot open tunnel: this server speaks Gotunnel protocol 2 and the client ${version}; upgrade the client`,
        })),
      ),
    );
  });
}

Deno.test({
  name: "this client against a protocol 2 server: a version error saying to upgrade the server",
  ...T,
  async fn() {
    await using old = protocol2Server();
    await assert.rejects(
      openTestTunnel({ addr: { port: old.port } }, 9),
      (e) =>
        e instanceof TunnelError && e.code === "version" &&
        /the server speaks Gotunnel protocol 2 or older and this client \d+: upgrade the server/
          .test(e.message),
    );
    const cli = await spawnCli("client.ts", ["9", "--server", `http://${HOST}:${old.port}`]).exited;
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /gotunnel-client: .*upgrade the server/);
  },
});
