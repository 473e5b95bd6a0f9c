/**
 * How the Microsoft credential is doing, as this process has seen it: the Fulfillment client and the
 * token provider report the outcome of what they do, and the deadlines (`GET /api/deadlines`, the
 * warner) read a snapshot.
 *
 * - A 401 or 403 from the Fulfillment API, or Entra rejecting the token request, is a *rejection*: the
 *   credential (tenant id, app id, secret or certificate) is not accepted. An expired secret makes every
 *   call answer 403 (docs/marketplace.md §2.4, §14.3), so consecutive rejections with no acceptance in
 *   between are the signal.
 * - Any other answer Microsoft gives to an authenticated call (2xx, 400, 404, 409) is an *acceptance*:
 *   the token got through. 429, 5xx and network errors say nothing about the credential and are not counted.
 * - A client secret's expiry cannot be read from here (Entra does not tell the client); a certificate's
 *   `notAfter` can, when MARKETPLACE_CLIENT_CERTIFICATE_PATH holds the certificate beside the key.
 *
 * In memory, per process: a restart starts from nothing known.
 */

export type CredentialKind = 'secret' | 'certificate' | 'static-token' | 'none';

export type CredentialFailure = {
  at: string;
  /** The Fulfillment call (`getSubscription`, …) or `token` for the token request. */
  call: string;
  /** 401/403 for an API answer; undefined for a token request Entra rejected. */
  status?: number;
  message: string;
};

export type CertificateInfo = {
  /** The certificate's `notAfter`, ISO-8601 UTC. */
  notAfter: string;
  notBefore: string;
  subject: string;
  thumbprintSha256: string;
};

export type CredentialHealthSnapshot = {
  kind: CredentialKind;
  /** Rejections since the last acceptance (0 when the last outcome was an acceptance or nothing happened yet). */
  consecutiveRejections: number;
  /** The first rejection of the current run of rejections. */
  failingSince?: string;
  lastSuccessAt?: string;
  lastFailure?: CredentialFailure;
  certificate?: CertificateInfo;
};

const MAX_MESSAGE = 500;

export class CredentialHealth {
  #kind: CredentialKind;
  #consecutive = 0;
  #failingSince: string | undefined;
  #lastSuccessAt: string | undefined;
  #lastFailure: CredentialFailure | undefined;
  #certificate: CertificateInfo | undefined;
  readonly #now: () => Date;

  constructor(options: { kind?: CredentialKind; now?: () => Date } = {}) {
    this.#kind = options.kind ?? 'none';
    this.#now = options.now ?? (() => new Date());
  }

  setKind(kind: CredentialKind): void {
    this.#kind = kind;
  }

  setCertificate(certificate: CertificateInfo): void {
    this.#certificate = { ...certificate };
  }

  /** Microsoft accepted the token (any answer but 401/403, 429 and 5xx). */
  recordAccepted(): void {
    this.#consecutive = 0;
    this.#failingSince = undefined;
    this.#lastSuccessAt = this.#now().toISOString();
  }

  /** Microsoft rejected the credential: a 401/403 from the API, or Entra rejecting the token request. */
  recordRejected(failure: Omit<CredentialFailure, 'at'>): void {
    const at = this.#now().toISOString();
    this.#consecutive += 1;
    this.#failingSince ??= at;
    this.#lastFailure = { ...failure, message: failure.message.slice(0, MAX_MESSAGE), at };
  }

  /** A token request that failed for another reason (Entra unreachable): remembered, not counted as a rejection. */
  recordTokenUnavailable(message: string): void {
    this.#lastFailure = { call: 'token', message: message.slice(0, MAX_MESSAGE), at: this.#now().toISOString() };
  }

  snapshot(): CredentialHealthSnapshot {
    return {
      kind: this.#kind,
      consecutiveRejections: this.#consecutive,
      ...(this.#failingSince ? { failingSince: this.#failingSince } : {}),
      ...(this.#lastSuccessAt ? { lastSuccessAt: this.#lastSuccessAt } : {}),
      ...(this.#lastFailure ? { lastFailure: { ...this.#lastFailure } } : {}),
      ...(this.#certificate ? { certificate: { ...this.#certificate } } : {}),
    };
  }
}
