export function writeJsonSchemas(_outDir: string, _options: { experimental: boolean }): Promise<number> {
  return Promise.reject(new Error('generate-json-schema is being written in this change'));
}
