/** The piscina ceiling's task (`worker-echo.ts`): returns its input, so only piscina's own cost remains. */
export default function echo(message: unknown): unknown {
  return message;
}
