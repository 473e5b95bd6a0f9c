/**
 * A command the domain refuses. `code` is stable (for clients and logs); `status` is the HTTP
 * status an edge should answer with (409: the state does not allow it, 400/422: the input is wrong).
 */
export class DomainError extends Error {
  override name = 'DomainError';
  constructor(
    readonly code: string,
    message: string,
    readonly status: 400 | 404 | 409 | 422 = 409,
  ) {
    super(message);
  }
}
