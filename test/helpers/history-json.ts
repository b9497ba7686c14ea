/**
 * History <-> the SDK's history JSON (what `temporal workflow show --output json` writes), with the protobufjs copy that
 * @temporalio/proto's types belong to.
 *
 * Why not `historyToJSON` / `historyFromJSON` of @temporalio/common (which `Worker.runReplayHistories` calls for JSON
 * input): in an npm install of SDK 1.24, @grpc/proto-loader keeps protobufjs 7 at the top of node_modules, so
 * @temporalio/common and @temporalio/proto each get their own copy of protobufjs 8. protojson's `instanceof Type` check
 * then fails across the copies ("TypeError: type must be a Type") and no JSON history loads. The replay test therefore
 * decodes the files here and hands the worker History messages.
 */
import { createRequire } from 'node:module';
import * as proto from '@temporalio/proto';
import { patchProtobufRoot } from '@temporalio/proto/lib/patch-protobuf-root';

type History = proto.temporal.api.history.v1.IHistory;

interface ProtoJson {
  fromJson(type: unknown, json: unknown, options?: { ignoreUnknownFields?: boolean }): unknown;
  toJson(type: unknown, message: unknown): unknown;
}

// The protobufjs that @temporalio/proto resolves (its own copy, whatever the install layout).
const protojson = createRequire(require.resolve('@temporalio/proto'))('protobufjs/ext/protojson') as ProtoJson;
const historyType = (patchProtobufRoot(proto) as unknown as { lookupType(name: string): unknown }).lookupType(
  'temporal.api.history.v1.History',
);

/** The history as a plain JSON value (enums as EVENT_TYPE_… names, int64 as strings, bytes as base64). */
export function historyToJson(history: History): unknown {
  return protojson.toJson(historyType, proto.temporal.api.history.v1.History.fromObject(history));
}

/** A History message from its JSON (unknown fields, e.g. from a newer server, are ignored). */
export function historyFromJson(json: unknown): History {
  return protojson.fromJson(historyType, json, { ignoreUnknownFields: true }) as History;
}
