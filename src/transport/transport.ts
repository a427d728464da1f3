/** A bidirectional channel carrying one JSON message per unit (a line, a frame, a call). */
export interface Transport {
  readonly kind: 'stdio' | 'websocket' | 'in-process' | 'remote-control';
  /** Starts delivering inbound messages to the sink. */
  start(sink: TransportSink): void;
  /** Queues one outbound message (serialized JSON, no trailing newline). */
  send(text: string): void;
  /** Stops reading. Already queued output is still written. */
  stopReading(): void;
  /** Writes what is queued, then closes the channel. */
  close(): Promise<void>;
}

export interface TransportSink {
  message(text: string): void;
  /** The peer went away (EOF, socket closed). */
  closed(): void;
}
