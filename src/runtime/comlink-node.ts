/**
 * comlink's Node adapter, typed. Its ESM file has no declarations, and the UMD one is
 * `module.exports = fn` at run time while its .d.ts says `export default`, so the import shape
 * differs between tsc and Node; this picks the function either way.
 */
import type { Endpoint } from 'comlink';
import * as adapter from 'comlink/dist/umd/node-adapter.js';
import type { MessagePort, Worker } from 'node:worker_threads';

type NodeEndpointFn = (port: MessagePort | Worker) => Endpoint;
const mod = adapter as unknown as { default: NodeEndpointFn | { default: NodeEndpointFn } };

export const nodeEndpoint: NodeEndpointFn =
  typeof mod.default === 'function' ? mod.default : mod.default.default;
