/** `app-server generate-json-schema` / `generate-ts`: write the registry out as files. */
import { writeJsonSchemas } from '../schema/json-schema.js';
import { writeTypeScript } from '../schema/typescript.js';

export function runGenerateJsonSchema(outDir: string, experimental: boolean): Promise<number> {
  return writeJsonSchemas(outDir, { experimental });
}

export function runGenerateTs(outDir: string, experimental: boolean): Promise<number> {
  return writeTypeScript(outDir, { experimental });
}
