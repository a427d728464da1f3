/**
 * Device-key failures as codex words them (spec A.5). Providers and the key store throw these
 * ProtocolErrors directly, so an error crosses the worker boundary as data and reaches the client
 * unchanged.
 */
import { ErrorCode, ProtocolError } from '../protocol/errors.js';
import type { DeviceKeyProtectionClass } from './provider.js';

export const KEY_NOT_FOUND_MESSAGE = 'device key not found';
export const HARDWARE_UNAVAILABLE_MESSAGE = 'hardware-backed device keys are not available on this platform';

export function keyNotFound(): ProtocolError {
  return new ProtocolError(ErrorCode.InvalidRequest, KEY_NOT_FOUND_MESSAGE);
}

export function hardwareUnavailable(): ProtocolError {
  return new ProtocolError(ErrorCode.InvalidRequest, HARDWARE_UNAVAILABLE_MESSAGE);
}

export function degradedProtectionNotAllowed(protectionClass: DeviceKeyProtectionClass): ProtocolError {
  return new ProtocolError(
    ErrorCode.InvalidRequest,
    `hardware-backed device keys are not available; set protectionPolicy to allow_os_protected_nonextractable to allow key protection class ${protectionClass}`,
  );
}

export function invalidPayload(message: string): ProtocolError {
  return new ProtocolError(ErrorCode.InvalidRequest, `invalid device key payload: ${message}`);
}

/** The device (TPM, token, their files) failed; the message says which and how, never a secret. */
export function platformError(message: string): ProtocolError {
  return new ProtocolError(ErrorCode.Internal, `device key platform error: ${message}`);
}

/** A cryptographic result was malformed (a signature or public key the device returned). */
export function cryptoError(message: string): ProtocolError {
  return new ProtocolError(ErrorCode.Internal, `device key cryptography error: ${message}`);
}
