/**
 * The device-key methods on the main thread: the checks that need no state (key id format,
 * payload rules, protection policy), in codex's order (spec A.4.2), then one message to the key
 * store of the key's protection class. Each class is an actor hosted in its own key-store worker
 * threads; the key id's prefix says which one holds a key.
 */
import type { Static } from 'typebox';
import type { BrokerServices } from '../broker/services.js';
import type { HandlerTable } from '../broker/handlers.js';
import type { DeviceKeyProtectionPolicy } from '../protocol/methods/device-key.js';
import { isBrokerError } from '../protocol/errors.js';
import { ThreadHost } from '../runtime/thread-host.js';
import {
  degradedProtectionNotAllowed,
  hardwareUnavailable,
  invalidPayload,
  platformError,
} from './errors.js';
import { keyIdClass } from './key-id.js';
import {
  KeyStoreMessage,
  type CreateBody,
  type DeviceKeyInfo,
  type DeviceKeySignature,
  type PublicBody,
  type SignBody,
} from './key-store-messages.js';
import type { DeviceKeyProtectionClass } from './provider.js';
import type { KeyStoreSetup } from './key-store.js';
import { chooseProviders, prepareSofthsm, type ProviderChoice } from './provider-choice.js';
import { validateSignPayload } from './sign-payload.js';

export type DeviceKeyMethod = 'device/key/create' | 'device/key/public' | 'device/key/sign';

const CLASSES: readonly DeviceKeyProtectionClass[] = [
  'hardware_secure_enclave',
  'hardware_tpm',
  'os_protected_nonextractable',
];

export function keyStoreAddress(protectionClass: DeviceKeyProtectionClass): string {
  return `device-key/${protectionClass}`;
}

export class DeviceKeyService {
  private readonly choice: ProviderChoice;
  private readonly hosts = new Map<DeviceKeyProtectionClass, ThreadHost>();
  private softhsmPrepared = false;

  constructor(
    private readonly services: BrokerServices,
    private readonly now: () => number = () => Math.floor(Date.now() / 1000),
  ) {
    this.choice = chooseProviders(services.settings, services.codexHome, services.env);
    for (const note of this.choice.notes) services.log.debug(note);
    const found = CLASSES.filter((c) => this.choice.configs[c].kind !== 'unsupported');
    services.log.debug({ deviceKeyClasses: found }, 'device-key providers found');
    for (const protectionClass of CLASSES) {
      const provider = this.choice.configs[protectionClass];
      const setup: KeyStoreSetup = {
        provider,
        codexHome: services.codexHome,
        tpmTimeoutMs: services.settings.deviceKeyTpmTimeoutMs,
      };
      const host = new ThreadHost({
        name: keyStoreAddress(protectionClass),
        module: 'key-store.worker.js',
        setup,
        // A PKCS#11 token takes sessions from many threads; a TPM connection is one at a time.
        threads: provider.kind === 'pkcs11' ? services.settings.workerThreads : 1,
        codec: services.system.codec,
        log: services.log,
      });
      this.hosts.set(protectionClass, host);
      services.system.spawnHost(keyStoreAddress(protectionClass), host, {
        concurrency: 64,
        capacity: services.settings.mailboxCapacity,
      });
    }
  }

  handlers(): Pick<HandlerTable, DeviceKeyMethod> {
    return {
      'device/key/create': (params) => this.create(params),
      'device/key/public': (params) => this.publicKey(params.keyId),
      'device/key/sign': (params) => this.sign(params),
    };
  }

  /** Ends every key-store worker as a crash would; recovery tests use it. */
  async crashWorkers(): Promise<void> {
    await Promise.all([...this.hosts.values()].map((host) => host.crashWorkers()));
  }

  /** Resolves once the key-store workers have closed their sessions and exited (after stopAll). */
  async closed(): Promise<void> {
    await Promise.all([...this.hosts.values()].map((host) => host.closed()));
  }

  /** Key-store worker threads alive now, over every protection class. */
  get threadCount(): number {
    let n = 0;
    for (const host of this.hosts.values()) n += host.threadCount;
    return n;
  }

  async create(params: {
    accountUserId: string;
    clientId: string;
    protectionPolicy?: Static<typeof DeviceKeyProtectionPolicy> | null;
  }): Promise<DeviceKeyInfo> {
    if (params.accountUserId.length === 0) throw invalidPayload('accountUserId must not be empty');
    if (params.clientId.length === 0) throw invalidPayload('clientId must not be empty');
    const protectionClass = this.classFor(params.protectionPolicy ?? 'hardware_only');
    const body: CreateBody = { accountUserId: params.accountUserId, clientId: params.clientId };
    return this.ask(protectionClass, KeyStoreMessage.create, body);
  }

  async publicKey(keyId: string): Promise<DeviceKeyInfo> {
    const body: PublicBody = { keyId };
    return this.ask(keyIdClass(keyId), KeyStoreMessage.public, body);
  }

  async sign(params: SignBody): Promise<DeviceKeySignature> {
    const protectionClass = keyIdClass(params.keyId);
    validateSignPayload(params.payload, this.now());
    return this.ask(protectionClass, KeyStoreMessage.sign, params);
  }

  /** Hardware first; the software class only when the policy allows it (spec A.2). */
  private classFor(policy: Static<typeof DeviceKeyProtectionPolicy>): DeviceKeyProtectionClass {
    const has = (c: DeviceKeyProtectionClass) => this.choice.configs[c].kind !== 'unsupported';
    if (has('hardware_tpm')) return 'hardware_tpm';
    if (!has('os_protected_nonextractable')) throw hardwareUnavailable();
    if (policy !== 'allow_os_protected_nonextractable') {
      throw degradedProtectionNotAllowed('os_protected_nonextractable');
    }
    return 'os_protected_nonextractable';
  }

  private async ask<T>(protectionClass: DeviceKeyProtectionClass, type: string, body: unknown): Promise<T> {
    if (protectionClass === 'os_protected_nonextractable' && !this.softhsmPrepared) {
      // The C library reads the real environment, so this is process.env whatever the broker got.
      prepareSofthsm(this.choice.configs[protectionClass], this.choice.stateDir, process.env);
      this.softhsmPrepared = true;
    }
    try {
      return await this.services.system.ask<T>(keyStoreAddress(protectionClass), type, body);
    } catch (e) {
      if (isBrokerError(e, 'WORKER_FAILED')) {
        throw platformError(`the key-store worker stopped during the request (${e.message}); retry`);
      }
      throw e;
    }
  }
}
