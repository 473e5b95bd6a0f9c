/**
 * The run's decider, pure: which events a command adds to a run's stream. The instance that runs a run names
 * itself in every command, and only the instance the stream last named (by Started or Resumed) may record
 * pages, finish or interrupt it: an instance that lost its claim and did not notice (a long pause) is refused
 * at its next write instead of recording over the run another instance resumed.
 */
import type { Decider, EventDecoder } from '../decider.js';
import { DomainError } from '../errors.js';
import { decodeReconciliationEvent } from './reconciliation.codec.js';
import type { ReconciliationEvent, RunCounts, RunTrigger } from './reconciliation.events.js';
import { addCounts, evolveRun, initialRunState } from './reconciliation.state.js';
import type { Run, RunState } from './reconciliation.state.js';

type Meta = { now: string; instanceId: string };

export type ReconciliationCommand =
  | (Meta & { type: 'StartRun'; runId: string; trigger: RunTrigger })
  | (Meta & { type: 'ResumeRun'; trigger: RunTrigger })
  | (Meta & { type: 'RecordPage'; page: number; link?: string; nextLink?: string; found: RunCounts })
  | (Meta & { type: 'InterruptRun'; reason: string })
  | (Meta & { type: 'FinishRun' });

function existing(state: RunState, command: ReconciliationCommand): Run {
  if (state.status === 'none') throw new DomainError('run-not-found', `${command.type}: no such reconciliation run`, 404);
  return state;
}

/** The run is running on the commanding instance. */
function runningHere(state: RunState, command: ReconciliationCommand): Run {
  const run = existing(state, command);
  if (run.status !== 'running' || run.instanceId !== command.instanceId) {
    throw new DomainError(
      'run-not-held',
      `${command.type}: run ${run.runId} is ${run.status} on ${run.instanceId}, not running on ${command.instanceId}`,
    );
  }
  return run;
}

function recordPage(command: Extract<ReconciliationCommand, { type: 'RecordPage' }>, state: RunState): ReconciliationEvent[] {
  const run = existing(state, command);
  if (command.page <= run.pages && run.instanceId === command.instanceId) return []; // recorded already
  runningHere(state, command);
  if (run.listed) throw new DomainError('run-listed', `RecordPage: run ${run.runId} has checked its last page already`);
  if (command.page !== run.pages + 1) {
    throw new DomainError('page-out-of-order', `RecordPage: run ${run.runId} has ${run.pages} pages; page ${command.page} cannot be next`);
  }
  return [
    {
      type: 'ReconciliationPageChecked',
      data: {
        at: command.now,
        instanceId: command.instanceId,
        page: command.page,
        ...(command.link !== undefined ? { link: command.link } : {}),
        ...(command.nextLink !== undefined ? { nextLink: command.nextLink } : {}),
        found: command.found,
        counts: addCounts(run.counts, command.found),
      },
    },
  ];
}

export function decideRun(command: ReconciliationCommand, state: RunState): ReconciliationEvent[] {
  switch (command.type) {
    case 'StartRun': {
      if (state.status === 'none') {
        return [{ type: 'ReconciliationStarted', data: { runId: command.runId, at: command.now, trigger: command.trigger, instanceId: command.instanceId } }];
      }
      if (state.runId === command.runId && state.instanceId === command.instanceId && state.status === 'running') return [];
      throw new DomainError('run-exists', `StartRun: run ${state.runId} exists already (${state.status})`);
    }
    case 'ResumeRun': {
      const run = existing(state, command);
      if (run.status === 'finished') throw new DomainError('run-finished', `ResumeRun: run ${run.runId} has finished`);
      return [{ type: 'ReconciliationResumed', data: { at: command.now, trigger: command.trigger, instanceId: command.instanceId, fromPage: run.pages + 1, counts: run.counts } }];
    }
    case 'RecordPage':
      return recordPage(command, state);
    case 'InterruptRun': {
      const run = existing(state, command);
      if (run.status !== 'running' || run.instanceId !== command.instanceId) return [];
      return [{ type: 'ReconciliationInterrupted', data: { at: command.now, instanceId: command.instanceId, reason: command.reason, pages: run.pages, counts: run.counts } }];
    }
    case 'FinishRun': {
      const run = existing(state, command);
      if (run.status === 'finished') return [];
      runningHere(state, command);
      if (!run.listed) throw new DomainError('run-not-listed', `FinishRun: run ${run.runId} has pages left to check`);
      const durationMs = Math.max(0, Date.parse(command.now) - Date.parse(run.startedAt));
      return [{ type: 'ReconciliationFinished', data: { at: command.now, instanceId: command.instanceId, pages: run.pages, counts: run.counts, durationMs } }];
    }
    default: {
      const _exhaustive: never = command;
      throw new DomainError('unknown-command', `unknown command ${(command as { type: string }).type}`, 400);
    }
  }
}

export const reconciliationDecider: Decider<ReconciliationCommand, RunState, ReconciliationEvent> & EventDecoder<ReconciliationEvent> = {
  decide: decideRun,
  evolve: evolveRun,
  initialState: initialRunState,
  decode: decodeReconciliationEvent,
};
