/**
 * Structured logs on stderr (stdout is the protocol). Levels come from GATEHOUSE_LOG
 * (trace, debug, info, warn, error, silent). Callers log method names, ids and sizes, never
 * params, results or tokens.
 */
import { pino, type Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

export function createLogger(level: string = process.env.GATEHOUSE_LOG ?? 'info'): Logger {
  const chosen = (LOG_LEVELS as readonly string[]).includes(level) ? level : 'info';
  return pino(
    { level: chosen, base: undefined, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: 2, sync: true }),
  );
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
