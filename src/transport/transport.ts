/**
 * A bidirectional channel carrying one JSON message per unit (a line, a frame, a call).
 *
 * Backpressure (shared/notes P3, DESIGN principle 6) is the transport's own business, since only
 * it sees its output buffer: a stream transport counts what it has written and the peer has not
 * read yet, and past `gatehouse.max_pending_output_bytes` it stops reading its input until the
 * peer catches up (see output-pressure.ts). The peer's own writes then block in the pipe or TCP
 * window, so a client that does not read cannot make the broker buffer without limit, and the
 * requests it already sent are still answered. The broker bounds the requests each connection
 * holds (admission.ts).
 */
export interface Transport {
  readonly kind: 'stdio' | 'websocket' | 'in-process' | 'remote-control';
  /** Starts delivering inbound messages to the sink. */
  start(sink: TransportSink): void;
  /** Queues one outbound message (serialized JSON, no trailing newline). */
  send(text: string): void;
  /** Stops reading. Already queued output is still written. */
  stopReading(): void;
  /**
   * Writes what is queued, then closes the channel. With `flushTimeoutMs`, output the peer has
   * not taken by then is dropped, so a peer that never reads cannot hold the close up.
   */
  close(flushTimeoutMs?: number): Promise<void>;
}

export interface TransportSink {
  message(text: string): void;
  /** The peer went away (EOF, socket closed). */
  closed(): void;
}
