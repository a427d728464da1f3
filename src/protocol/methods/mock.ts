import * as Type from 'typebox/type';
import { defineClientRequest } from '../registry.js';

/** codex's test-only experimental method; it lets a client check the experimental gate. */
export const MockExperimentalMethodParams = Type.Object(
  {
    value: Type.Optional(
      Type.Union([Type.String(), Type.Null()], { description: 'Test-only payload field.' }),
    ),
  },
  { title: 'MockExperimentalMethodParams' },
);

export const MockExperimentalMethodResponse = Type.Object(
  { echoed: Type.Union([Type.String(), Type.Null()], { description: 'Echoes the input `value`.' }) },
  { title: 'MockExperimentalMethodResponse' },
);

export const mockRequests = {
  'mock/experimentalMethod': defineClientRequest({
    params: MockExperimentalMethodParams,
    result: MockExperimentalMethodResponse,
    experimental: true,
    version: 'v2',
  }),
};
