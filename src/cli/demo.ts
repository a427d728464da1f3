export function runDemo(): Promise<number> { return Promise.resolve(0); }
