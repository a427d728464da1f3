/**
 * RFC 3339 timestamps as codex reads them: the remote-control server token's `expires_at` is
 * parsed with Rust's `time` crate, whose reasons for refusing one reach clients inside codex's
 * error texts, so a refusal here is worded as that crate words it.
 */

/**
 * RFC 3339 (`2026-11-20T22:45:03Z`, `…T22:45:03.25+02:00`) to epoch milliseconds, or the reason
 * it is not one, worded as Rust's `time` crate (which codex parses with) words it.
 */
export function parseRfc3339(text: string): number | string {
  let at = 0;
  const digits = (n: number, name: string, min: number, max: number): number | string => {
    const part = text.slice(at, at + n);
    if (!new RegExp(`^\\d{${n}}$`).test(part) || Number(part) < min || Number(part) > max) {
      return `the '${name}' component could not be parsed`;
    }
    at += n;
    return Number(part);
  };
  const literal = (chars: string): string | undefined => {
    if (at >= text.length || !chars.includes(text[at]!)) return 'a character literal was not valid';
    at++;
    return undefined;
  };
  const fields: number[] = [];
  const steps: (() => number | string | undefined)[] = [
    () => digits(4, 'year', 0, 9999),
    () => literal('-'),
    () => digits(2, 'month', 1, 12),
    () => literal('-'),
    () => digits(2, 'day', 1, 31),
    () => literal('Tt'),
    () => digits(2, 'hour', 0, 23),
    () => literal(':'),
    () => digits(2, 'minute', 0, 59),
    () => literal(':'),
    () => digits(2, 'second', 0, 60),
  ];
  for (const step of steps) {
    const result = step();
    if (typeof result === 'string') return result;
    if (typeof result === 'number') fields.push(result);
  }
  const [year, month, day, hour, minute, second] = fields as [number, number, number, number, number, number];
  let millis = 0;
  if (text[at] === '.') {
    const fraction = /^\d+/.exec(text.slice(at + 1))?.[0];
    if (!fraction) return "the 'subsecond' component could not be parsed";
    millis = Number(fraction.slice(0, 3).padEnd(3, '0'));
    at += 1 + fraction.length;
  }
  let offsetMinutes = 0;
  if (text[at] === 'Z' || text[at] === 'z') {
    at++;
  } else {
    const sign = text[at] === '+' ? 1 : text[at] === '-' ? -1 : 0;
    if (sign === 0) return "the 'offset hour' component could not be parsed";
    at++;
    const hours = digits(2, 'offset hour', 0, 23);
    if (typeof hours === 'string') return hours;
    const colon = literal(':');
    if (colon) return colon;
    const minutes = digits(2, 'offset minute', 0, 59);
    if (typeof minutes === 'string') return minutes;
    offsetMinutes = sign * (hours * 60 + minutes);
  }
  if (at !== text.length) return 'unexpected trailing characters; the end of input was expected';
  const monthDays = new Date(Date.UTC(2000, month, 0)).getUTCDate(); // 2000: any leap year
  const lastDay = month === 2 && !isLeapYear(year) ? 28 : monthDays;
  if (day > lastDay) return `day must be in the range 1..=${lastDay} given values of other parameters`;
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day); // not Date.UTC: it reads years 0-99 as 1900-1999
  // A leap second (:60) is the last instant of its minute, as the time crate takes it.
  date.setUTCHours(hour, minute, Math.min(second, 59), second === 60 ? 999 : millis);
  return date.getTime() - offsetMinutes * 60_000;
}

function isLeapYear(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}
