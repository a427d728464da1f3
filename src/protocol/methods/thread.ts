/**
 * Threads and turns: what a minimal text turn and a compaction through the Responses relay need, with codex
 * 0.169.0's method names, field names and schema titles (reference-schema/codex-0.169.0/v2).
 *
 * Params declare only the fields Gatehouse reads; the serde walker ignores members a struct does
 * not declare (as serde does), so a real client's other fields (`approvalPolicy`, `sandbox`,
 * `config`, `effort`, `outputSchema`, ...) are accepted and ignored. The experimental fields
 * codex gates are still gated, through `experimentalUse`.
 *
 * Left out (declared by codex, not here):
 * - params read nowhere: ThreadStartParams other than model, cwd, baseInstructions,
 *   developerInstructions, ephemeral and the gated ones; TurnStartParams other than threadId,
 *   input, model. They are accepted and ignored.
 * - input variants' details: `image`, `localImage`, `audio`, `localAudio`, `skill` and `mention`
 *   decode (so a client sending them gets codex's behaviour at the decode step), but the relay
 *   only relays text and refuses the others with -32600.
 * - results: ThreadStartResponse without activePermissionProfile, approvalsReviewer details,
 *   instructionSources, runtimeWorkspaceRoots, multiAgentMode; Thread without the optional
 *   gitInfo, environments, section, extra, ...; SandboxPolicy and AskForApproval are reduced to
 *   the variants Gatehouse reports (`readOnly`, the string policies).
 * - ThreadItem: only `userMessage`, `agentMessage` and `contextCompaction` (of 19 variants);
 *   CodexErrorInfo: only the variants the relay reports; SessionSource: only its string variants.
 * - notifications: thread/status/changed, thread/tokenUsage/updated, account/rateLimits/updated,
 *   item/reasoning/*, turn/diff/updated and the other item kinds are never sent; nor are the
 *   item/started + item/completed pair codex sends for the turn's userMessage item.
 * - `turn/start` on a thread with a running turn is refused (-32600); codex folds the input into
 *   the running turn instead (what turn/steer does explicitly). `thread/compact/start` on a thread
 *   with a running turn (or compaction) is refused the same way.
 * - `thread/compacted` (ContextCompactedNotification, deprecated in the schema) is never sent:
 *   codex's app-server sends v2 clients only the `contextCompaction` item's item/started and
 *   item/completed, which Gatehouse sends.
 *
 * `thread/compact/start` (ThreadCompactStartParams `{threadId}`, ThreadCompactStartResponse `{}`)
 * runs codex's remote compaction v2 (spec D.1): a compaction turn whose Responses request is the
 * conversation followed by `{"type":"compaction_trigger"}`, over the thread's transport. Its
 * notifications are turn/started, item/started and item/completed of a `contextCompaction` item,
 * turn/completed. actors/thread/compaction.ts has what replaces the conversation.
 */
import * as Type from 'typebox/type';
import { defineClientRequest, defineNotification } from '../registry.js';

const NullableString = () => Type.Optional(Type.Union([Type.String(), Type.Null()]));

// ---------------------------------------------------------------------------------------------
// Shared types

export const TurnStatus = Type.Union(
  [
    Type.Literal('completed'),
    Type.Literal('interrupted'),
    Type.Literal('failed'),
    Type.Literal('inProgress'),
  ],
  { title: 'TurnStatus' },
);

const HttpStatusInfo = Type.Object({
  httpStatusCode: Type.Optional(Type.Union([Type.Integer({ format: 'uint16', minimum: 0 }), Type.Null()])),
});

/** The machine-readable part of an error; only the variants the relay reports. */
export const CodexErrorInfo = Type.Union(
  [
    Type.Union([
      Type.Literal('serverOverloaded'),
      Type.Literal('internalServerError'),
      Type.Literal('unauthorized'),
      Type.Literal('badRequest'),
      Type.Literal('other'),
    ]),
    Type.Object(
      { responseStreamConnectionFailed: HttpStatusInfo },
      {
        title: 'ResponseStreamConnectionFailedCodexErrorInfo',
        description: 'Failed to connect to the response SSE stream.',
        additionalProperties: false,
      },
    ),
    Type.Object(
      { responseStreamDisconnected: HttpStatusInfo },
      {
        title: 'ResponseStreamDisconnectedCodexErrorInfo',
        description: 'The response SSE stream disconnected in the middle of a turn before completion.',
        additionalProperties: false,
      },
    ),
  ],
  { title: 'CodexErrorInfo' },
);

export const TurnError = Type.Object(
  {
    message: Type.String(),
    codexErrorInfo: Type.Optional(Type.Union([CodexErrorInfo, Type.Null()])),
    additionalDetails: Type.Optional(Type.Union([Type.String(), Type.Null()], { default: null })),
  },
  { title: 'TurnError' },
);

const TextUserInput = Type.Object(
  {
    type: Type.Literal('text', { title: 'TextUserInputType' }),
    text: Type.String(),
    // text_elements (UI spans) is accepted and ignored.
  },
  { title: 'TextUserInput' },
);

/** Non-text inputs decode (codex accepts them) but the relay refuses them. */
const otherInput = (type: string, name: string, required: string[]) =>
  Type.Object(
    {
      type: Type.Literal(type, { title: `${name}UserInputType` }),
      ...Object.fromEntries(required.map((field) => [field, Type.String()])),
    },
    { title: `${name}UserInput` },
  );

export const UserInput = Type.Union(
  [
    TextUserInput,
    otherInput('image', 'Image', []),
    otherInput('localImage', 'LocalImage', ['path']),
    otherInput('audio', 'Audio', []),
    otherInput('localAudio', 'LocalAudio', ['path']),
    otherInput('skill', 'Skill', ['name', 'path']),
    otherInput('mention', 'Mention', ['name', 'path']),
  ],
  { title: 'UserInput' },
);

export const UserMessageThreadItem = Type.Object(
  {
    type: Type.Literal('userMessage', { title: 'UserMessageThreadItemType' }),
    id: Type.String(),
    content: Type.Array(UserInput),
  },
  { title: 'UserMessageThreadItem' },
);

export const AgentMessageThreadItem = Type.Object(
  {
    type: Type.Literal('agentMessage', { title: 'AgentMessageThreadItemType' }),
    id: Type.String(),
    text: Type.String(),
  },
  { title: 'AgentMessageThreadItem' },
);

export const ContextCompactionThreadItem = Type.Object(
  {
    type: Type.Literal('contextCompaction', { title: 'ContextCompactionThreadItemType' }),
    id: Type.String(),
  },
  { title: 'ContextCompactionThreadItem' },
);

export const ThreadItem = Type.Union(
  [UserMessageThreadItem, AgentMessageThreadItem, ContextCompactionThreadItem],
  {
    title: 'ThreadItem',
  },
);

export const TurnItemsView = Type.Union(
  [Type.Literal('notLoaded'), Type.Literal('summary'), Type.Literal('full')],
  { title: 'TurnItemsView' },
);

const UnixSeconds = (description: string) =>
  Type.Optional(Type.Union([Type.Integer({ format: 'int64' }), Type.Null()], { description }));

export const Turn = Type.Object(
  {
    id: Type.String({ description: 'Identifier for this turn. Codex-generated turn IDs are UUIDv7.' }),
    items: Type.Array(ThreadItem, { description: 'Thread items currently included in this turn payload.' }),
    itemsView: Type.Optional(TurnItemsView),
    status: TurnStatus,
    error: Type.Optional(Type.Union([TurnError, Type.Null()])),
    startedAt: UnixSeconds('Unix timestamp (in seconds) when the turn started.'),
    completedAt: UnixSeconds('Unix timestamp (in seconds) when the turn completed.'),
    durationMs: UnixSeconds('Duration between turn start and completion in milliseconds, if known.'),
  },
  { title: 'Turn' },
);

export const ThreadStatus = Type.Union(
  [
    Type.Object(
      { type: Type.Literal('notLoaded', { title: 'NotLoadedThreadStatusType' }) },
      { title: 'NotLoadedThreadStatus' },
    ),
    Type.Object(
      { type: Type.Literal('idle', { title: 'IdleThreadStatusType' }) },
      { title: 'IdleThreadStatus' },
    ),
    Type.Object(
      { type: Type.Literal('systemError', { title: 'SystemErrorThreadStatusType' }) },
      { title: 'SystemErrorThreadStatus' },
    ),
    Type.Object(
      {
        type: Type.Literal('active', { title: 'ActiveThreadStatusType' }),
        activeFlags: Type.Array(
          Type.Union([Type.Literal('waitingOnApproval'), Type.Literal('waitingOnUserInput')], {
            title: 'ThreadActiveFlag',
          }),
        ),
      },
      { title: 'ActiveThreadStatus' },
    ),
  ],
  { title: 'ThreadStatus' },
);

export const SessionSource = Type.Union(
  [
    Type.Literal('cli'),
    Type.Literal('vscode'),
    Type.Literal('exec'),
    Type.Literal('appServer'),
    Type.Literal('unknown'),
  ],
  { title: 'SessionSource' },
);

export const Thread = Type.Object(
  {
    id: Type.String({ description: 'Identifier for this thread. Codex-generated thread IDs are UUIDv7.' }),
    sessionId: Type.String(),
    forkedFromId: NullableString(),
    parentThreadId: NullableString(),
    preview: Type.String({ description: 'Usually the first user message in the thread, if available.' }),
    ephemeral: Type.Boolean({
      description: 'Whether the thread is ephemeral and should not be materialized on disk.',
    }),
    projectId: Type.Union([Type.String(), Type.Null()]),
    modelProvider: Type.String(),
    model: NullableString(),
    createdAt: Type.Integer({ format: 'int64' }),
    updatedAt: Type.Integer({ format: 'int64' }),
    status: ThreadStatus,
    path: NullableString(),
    cwd: Type.String(),
    cliVersion: Type.String(),
    originator: NullableString(),
    source: SessionSource,
    name: NullableString(),
    agentNickname: NullableString(),
    agentRole: NullableString(),
    turns: Type.Array(Turn),
  },
  { title: 'Thread' },
);

export const AskForApproval = Type.Union(
  [Type.Literal('untrusted'), Type.Literal('on-request'), Type.Literal('never')],
  { title: 'AskForApproval' },
);

export const ApprovalsReviewer = Type.Union(
  [Type.Literal('user'), Type.Literal('auto_review'), Type.Literal('guardian_subagent')],
  { title: 'ApprovalsReviewer' },
);

export const SandboxPolicy = Type.Union(
  [
    Type.Object(
      {
        type: Type.Literal('readOnly', { title: 'ReadOnlySandboxPolicyType' }),
        networkAccess: Type.Optional(Type.Boolean({ default: false })),
      },
      { title: 'ReadOnlySandboxPolicy' },
    ),
  ],
  { title: 'SandboxPolicy' },
);

// ---------------------------------------------------------------------------------------------
// Client requests

export const ThreadStartParams = Type.Object(
  {
    model: NullableString(),
    cwd: NullableString(),
    baseInstructions: NullableString(),
    developerInstructions: NullableString(),
    ephemeral: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
    // Gated like codex's experimental fields; otherwise unused.
    allowProviderModelFallback: Type.Optional(Type.Boolean()),
    dynamicTools: Type.Optional(Type.Union([Type.Array(Type.Unknown()), Type.Null()])),
    experimentalRawEvents: Type.Optional(Type.Boolean()),
    mockExperimentalField: NullableString(),
  },
  { title: 'ThreadStartParams' },
);

export const ThreadStartResponse = Type.Object(
  {
    thread: Thread,
    model: Type.String(),
    modelProvider: Type.String(),
    serviceTier: NullableString(),
    cwd: Type.String(),
    approvalPolicy: AskForApproval,
    approvalsReviewer: ApprovalsReviewer,
    sandbox: SandboxPolicy,
    reasoningEffort: NullableString(),
  },
  { title: 'ThreadStartResponse' },
);

export const TurnStartParams = Type.Object(
  {
    threadId: Type.String(),
    input: Type.Array(UserInput),
    model: Type.Optional(
      Type.Union([Type.String(), Type.Null()], {
        description: 'Override the model for this turn and subsequent turns.',
      }),
    ),
    // Experimental in codex; gated, otherwise unused.
    collaborationMode: Type.Optional(Type.Unknown()),
    cyberAccessProgram: Type.Optional(Type.Unknown()),
  },
  { title: 'TurnStartParams' },
);

export const TurnStartResponse = Type.Object({ turn: Turn }, { title: 'TurnStartResponse' });

export const TurnInterruptParams = Type.Object(
  { threadId: Type.String(), turnId: Type.String() },
  { title: 'TurnInterruptParams' },
);

export const TurnInterruptResponse = Type.Object({}, { title: 'TurnInterruptResponse' });

export const ThreadCompactStartParams = Type.Object(
  { threadId: Type.String() },
  { title: 'ThreadCompactStartParams' },
);

export const ThreadCompactStartResponse = Type.Object({}, { title: 'ThreadCompactStartResponse' });

export const threadRequests = {
  'thread/start': defineClientRequest({
    params: ThreadStartParams,
    result: ThreadStartResponse,
    experimentalUse: (p) => {
      if (p.allowProviderModelFallback === true) return 'thread/start.allowProviderModelFallback';
      if (p.dynamicTools != null) return 'thread/start.dynamicTools';
      if (p.mockExperimentalField != null) return 'thread/start.mockExperimentalField';
      if (p.experimentalRawEvents === true) return 'thread/start.experimentalRawEvents';
      return undefined;
    },
    version: 'v2',
  }),
  'turn/start': defineClientRequest({
    params: TurnStartParams,
    result: TurnStartResponse,
    experimentalUse: (p) => {
      if (p.collaborationMode != null) return 'turn/start.collaborationMode';
      if (p.cyberAccessProgram != null) return 'turn/start.cyberAccessProgram';
      return undefined;
    },
    version: 'v2',
  }),
  'turn/interrupt': defineClientRequest({
    params: TurnInterruptParams,
    result: TurnInterruptResponse,
    version: 'v2',
  }),
  'thread/compact/start': defineClientRequest({
    params: ThreadCompactStartParams,
    result: ThreadCompactStartResponse,
    version: 'v2',
  }),
};

// ---------------------------------------------------------------------------------------------
// Server notifications

export const ThreadStartedNotification = Type.Object(
  { thread: Thread },
  { title: 'ThreadStartedNotification' },
);

export const TurnStartedNotification = Type.Object(
  { threadId: Type.String(), turn: Turn },
  { title: 'TurnStartedNotification' },
);

export const TurnCompletedNotification = Type.Object(
  { threadId: Type.String(), turn: Turn },
  { title: 'TurnCompletedNotification' },
);

export const ItemStartedNotification = Type.Object(
  {
    item: ThreadItem,
    threadId: Type.String(),
    turnId: Type.String(),
    startedAtMs: Type.Integer({
      format: 'int64',
      description: 'Unix timestamp (in milliseconds) when this item lifecycle started.',
    }),
  },
  { title: 'ItemStartedNotification' },
);

export const ItemCompletedNotification = Type.Object(
  {
    item: ThreadItem,
    threadId: Type.String(),
    turnId: Type.String(),
    completedAtMs: Type.Integer({
      format: 'int64',
      description: 'Unix timestamp (in milliseconds) when this item lifecycle completed.',
    }),
  },
  { title: 'ItemCompletedNotification' },
);

export const AgentMessageDeltaNotification = Type.Object(
  { threadId: Type.String(), turnId: Type.String(), itemId: Type.String(), delta: Type.String() },
  { title: 'AgentMessageDeltaNotification' },
);

export const ErrorNotification = Type.Object(
  { error: TurnError, willRetry: Type.Boolean(), threadId: Type.String(), turnId: Type.String() },
  { title: 'ErrorNotification' },
);

export const WarningNotification = Type.Object(
  {
    message: Type.String({ description: 'Concise warning message for the user.' }),
    threadId: Type.Optional(
      Type.Union([Type.String(), Type.Null()], {
        description: 'Optional thread target when the warning applies to a specific thread.',
      }),
    ),
  },
  { title: 'WarningNotification' },
);

export const threadNotifications = {
  error: defineNotification({ params: ErrorNotification, version: 'v2' }),
  'thread/started': defineNotification({ params: ThreadStartedNotification, version: 'v2' }),
  'turn/started': defineNotification({ params: TurnStartedNotification, version: 'v2' }),
  'turn/completed': defineNotification({ params: TurnCompletedNotification, version: 'v2' }),
  'item/started': defineNotification({ params: ItemStartedNotification, version: 'v2' }),
  'item/completed': defineNotification({ params: ItemCompletedNotification, version: 'v2' }),
  'item/agentMessage/delta': defineNotification({ params: AgentMessageDeltaNotification, version: 'v2' }),
  warning: defineNotification({ params: WarningNotification, version: 'v2' }),
};
