export function writeTypeScript(_outDir: string, _options: { experimental: boolean }): Promise<number> {
  return Promise.reject(new Error('generate-ts is being written in this change'));
}
