import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import { PassThrough, Writable } from 'node:stream';
import dimse, {
  type association as dimseAssociation,
  type requests as dimseRequests,
  type responses as dimseResponses,
} from 'dcmjs-dimse';
import type { Context } from '../context.js';
import type { Logger } from '../log.js';
import {
  newUploadId,
  recordFiles,
  type StoredObject,
  storeIncoming,
  type UploadRecord,
} from '../pipeline/receive-files.js';
import { createPart10Header, isValidUid } from './create-part10-header.js';
import { createPduGuard } from './create-pdu-guard.js';
import {
  cleanUid,
  isStorageSopClass,
  negotiatePresentationContext,
} from './negotiate-presentation-context.js';

type Association = dimseAssociation.Association;
type PresentationContext = dimseAssociation.PresentationContext;
type CStoreRequest = dimseRequests.CStoreRequest;
type CStoreResponse = dimseResponses.CStoreResponse;

const {
  Status,
  RejectResult,
  RejectSource,
  RejectReason,
  PresentationContextResult,
  AbortSource,
  AbortReason,
} = dimse.constants;

/** PS3.7 C.4.2.1.4 status codes not in the library's table. */
const STATUS_OUT_OF_RESOURCES = 0xa700;
const STATUS_CANNOT_UNDERSTAND = 0xc000;

/** Largest P-DATA-TF Teleread advertises; the PDU guard allows some slack for peers that count differently. */
export const MAX_PDU_LENGTH = 256 * 1024;
const PDU_GUARD_LIMIT = 1024 * 1024;
/** How long a peer may hold the connection open after A-RELEASE-RP or A-ASSOCIATE-RJ (the ARTIM timer). */
const ARTIM_MS = 5_000;

export interface StoreScpDeps {
  ctx: Context;
  log: Logger;
  /** The site whose ae_titles list the calling AE title; null when none does. */
  siteForCallingAe(callingAeTitle: string): Promise<string | null>;
  /** Whether a new association must be turned away (shutting down, or too many at once). */
  refuseNewAssociation(): 'closing' | 'busy' | null;
}

interface Receipt {
  sopInstanceUid: string;
  transferSyntaxUid: string;
  body: PassThrough;
  stored: Promise<StoredObject>;
}

interface Refusal {
  status: number;
  why: string;
}

/**
 * Streams one C-STORE data set into the object store. The library writes PDV fragments synchronously as PDUs
 * arrive and ignores back-pressure, so when storage falls behind the socket itself is paused: an instance is
 * never held whole in memory, only what one TCP read and one PDU carry. It never errors (the library would not
 * listen): after a storage failure it just discards the rest of the message.
 */
class InstanceSink extends Writable {
  constructor(
    private readonly body: PassThrough,
    private readonly socket: Socket,
  ) {
    // Above the largest PDU, so the library's first write never reports back-pressure (it would then await a
    // 'drain' while processing later PDUs, and could write fragments out of order).
    super({ highWaterMark: 2 * PDU_GUARD_LIMIT });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    if (this.body.destroyed) {
      done();
      return;
    }
    if (this.body.write(chunk)) {
      done();
      return;
    }
    this.socket.pause();
    const resume = () => {
      this.body.off('drain', resume);
      this.body.off('close', resume);
      if (!this.socket.destroyed) this.socket.resume();
      done();
    };
    this.body.on('drain', resume);
    this.body.on('close', resume);
  }

  override _final(done: (err?: Error | null) => void): void {
    if (!this.body.destroyed) this.body.end();
    done();
  }
}

/**
 * One association (one TCP connection) of the C-STORE SCP. Associations from a calling AE title that no site
 * lists are rejected; accepted ones store each instance as a Part 10 object in one upload of the calling site,
 * committing its row before answering, so a long association makes progress instance by instance.
 */
export class StoreScp extends dimse.Scp {
  private readonly deps: StoreScpDeps;
  private readonly tcp: Socket;
  private log: Logger;
  private state: 'awaiting-request' | 'negotiating' | 'accepted' | 'ended' = 'awaiting-request';
  private upload: UploadRecord | null = null;
  private callingAe = '';
  private uploadCreated = false;
  private readonly receipts = new Map<CStoreRequest, Receipt | Refusal>();
  private readonly inFlight = new Set<Receipt>();
  /** Commits run one after another, so the upload row is created by the first and the others follow it. */
  private recording: Promise<unknown> = Promise.resolve();
  private counts = { stored: 0, failed: 0, refused: 0 };
  private closedResolve!: () => void;
  private readonly closed = new Promise<void>((resolve) => {
    this.closedResolve = resolve;
  });
  /** Resolves once the connection is closed and every instance it delivered is committed or given up. */
  readonly settled: Promise<void>;

  constructor(socket: Socket, deps: StoreScpDeps) {
    super(socket, { connectTimeout: 120_000, associationTimeout: 30_000, pduTimeout: 60_000 });
    this.tcp = socket;
    this.deps = deps;
    this.log = deps.log.child({ peer: `${socket.remoteAddress}:${socket.remotePort}` });
    // The server hands over an already connected socket; the library's association timer needs these set.
    Object.assign(this, { connected: true, connectedTime: Date.now() });
    this.settled = this.closed.then(async () => {
      let last: Promise<unknown>;
      do {
        last = this.recording;
        await last;
      } while (last !== this.recording);
      // Abandoned instances: their stores are failing and removing temporary data; let them finish.
      await Promise.allSettled([...this.inFlight].map((r) => r.stored));
    });

    const guard = createPduGuard(PDU_GUARD_LIMIT);
    // Prepended so the guard sees each chunk before the library buffers it.
    socket.prependListener('data', (chunk: Buffer) => {
      const problem = guard(chunk);
      if (problem) this.drop(`malformed traffic: ${problem}`);
    });
    this.on('networkError', (err: Error) => this.drop(`network error: ${err.message}`));
    this.on('close', () => this.onClose());
    if (socket.destroyed) this.onClose();
  }

  override associationRequested(association: Association): void {
    if (this.state !== 'awaiting-request') {
      this.drop('a second A-ASSOCIATE-RQ on one connection');
      return;
    }
    this.state = 'negotiating';
    this.negotiate(association).catch((err: unknown) => {
      this.log.error({ err }, 'association negotiation failed');
      this.reject(
        RejectResult.Transient,
        RejectSource.ServiceProviderPresentation,
        RejectReason.TemporaryCongestion,
      );
    });
  }

  private async negotiate(association: Association): Promise<void> {
    const callingAe = association.getCallingAeTitle().trim();
    this.callingAe = callingAe;
    const calledAe = association.getCalledAeTitle().trim();
    this.log = this.log.child({ callingAe, calledAe });

    const refusal = this.deps.refuseNewAssociation();
    if (refusal) {
      this.log.warn({ reason: refusal }, 'association rejected: not accepting associations now');
      const reason = refusal === 'busy' ? RejectReason.LocalLimitExceeded : RejectReason.TemporaryCongestion;
      this.reject(RejectResult.Transient, RejectSource.ServiceProviderPresentation, reason);
      return;
    }
    if (calledAe !== this.deps.ctx.config.dicomAeTitle.trim()) {
      this.log.warn('association rejected: called AE title not recognised');
      this.reject(RejectResult.Permanent, RejectSource.ServiceUser, RejectReason.CalledAeNotRecognized);
      return;
    }
    let siteId: string | null;
    try {
      siteId = await this.deps.siteForCallingAe(callingAe);
    } catch (err) {
      this.log.error({ err }, 'association rejected: could not look up the calling AE title');
      this.reject(
        RejectResult.Transient,
        RejectSource.ServiceProviderPresentation,
        RejectReason.TemporaryCongestion,
      );
      return;
    }
    if (!siteId) {
      this.log.warn('association rejected: calling AE title not recognised');
      this.reject(RejectResult.Permanent, RejectSource.ServiceUser, RejectReason.CallingAeNotRecognized);
      return;
    }
    if (this.tcp.destroyed) return;

    let accepted = 0;
    for (const { context } of association.getPresentationContexts()) {
      const decision = negotiatePresentationContext(
        context.getAbstractSyntaxUid(),
        context.getTransferSyntaxUids(),
      );
      if (decision.result === 'accept') {
        context.setResult(PresentationContextResult.Accept, decision.transferSyntaxUid);
        accepted++;
      } else if (decision.result === 'reject-abstract-syntax') {
        context.setResult(PresentationContextResult.RejectAbstractSyntaxNotSupported);
      } else {
        context.setResult(PresentationContextResult.RejectTransferSyntaxesNotSupported);
      }
    }
    // One operation at a time: the SCU waits for each C-STORE-RSP, which bounds what one association holds.
    association.setNegotiateAsyncOps(false);
    association.setMaxAsyncOpsInvoked(1);
    association.setMaxAsyncOpsPerformed(1);
    // The library advertises min(proposed, its own); a proposal of 0 means "no limit", which must not pass on.
    const proposed = association.getMaxPduLength();
    association.setMaxPduLength(proposed > 0 ? Math.min(proposed, MAX_PDU_LENGTH) : MAX_PDU_LENGTH);

    const requestId = randomUUID();
    this.log = this.log.child({ requestId, siteId });
    this.upload = {
      id: newUploadId(),
      siteId,
      priority: 'routine',
      notes: null,
      requestId,
      actor: { keyId: null, role: 'clinic' },
      channel: 'dimse',
    };
    this.state = 'accepted';
    this.sendAssociationAccept();
    this.log.info(
      { uploadId: this.upload.id, contexts: association.getPresentationContexts().length, accepted },
      'association accepted',
    );
  }

  override associationReleaseRequested(): void {
    // Answer only once every instance already received is committed: a release means the SCU is done.
    void this.recording.then(() => {
      if (this.tcp.destroyed) return;
      this.sendAssociationReleaseResponse();
      this.state = 'ended';
      this.log.info({ ...this.counts, uploadId: this.upload?.id }, 'association released');
      this.closeAfterArtim();
    });
  }

  override abort(source: number, reason: number): void {
    this.log.warn({ source, reason, ...this.counts }, 'association aborted by the peer');
    this.state = 'ended';
    this.stopInFlight('association aborted by the peer');
    this.tcp.destroy();
  }

  override cEchoRequest(
    request: dimseRequests.CEchoRequest,
    callback: (response: dimseResponses.CEchoResponse) => void,
  ): void {
    if (this.state !== 'accepted') {
      this.drop('C-ECHO outside an accepted association');
      return;
    }
    const response = dimse.responses.CEchoResponse.fromRequest(request);
    response.setStatus(Status.Success);
    callback(response);
  }

  override createStoreWritableStream(context: PresentationContext, request: CStoreRequest): Writable {
    const refuse = (status: number, why: string) => {
      this.receipts.set(request, { status, why });
      return new Writable({ write: (_chunk, _enc, done) => done() });
    };
    if (this.state !== 'accepted' || !this.upload || !context) {
      this.drop('C-STORE outside an accepted association');
      return refuse(STATUS_CANNOT_UNDERSTAND, 'C-STORE outside an accepted association');
    }
    if (context.getResult() !== PresentationContextResult.Accept) {
      return refuse(STATUS_CANNOT_UNDERSTAND, 'C-STORE on a presentation context that was not accepted');
    }
    const abstractSyntax = cleanUid(context.getAbstractSyntaxUid());
    const sopClassUid = cleanUid(request.getAffectedSopClassUid() ?? '');
    const sopInstanceUid = cleanUid(request.getAffectedSopInstanceUid() ?? '');
    const transferSyntaxUid = cleanUid(context.getAcceptedTransferSyntaxUid() ?? '');
    if (!isStorageSopClass(abstractSyntax) || sopClassUid !== abstractSyntax) {
      return refuse(
        Status.SopClassNotSupported,
        'SOP class is not the storage class of its presentation context',
      );
    }
    if (!isValidUid(sopInstanceUid) || !isValidUid(sopClassUid)) {
      return refuse(STATUS_CANNOT_UNDERSTAND, 'affected SOP class or instance UID is not a valid UID');
    }

    const body = new PassThrough();
    body.write(
      createPart10Header({
        sopClassUid,
        sopInstanceUid,
        transferSyntaxUid,
        sourceAeTitle: this.callingAe,
      }),
    );
    const stored = storeIncoming(
      this.deps.ctx,
      this.upload,
      { name: `${sopInstanceUid}.dcm`, contentType: 'application/dicom', body },
      { remaining: this.deps.ctx.config.maxUploadBytes },
      'instance.dcm',
    );
    const receipt: Receipt = { sopInstanceUid, transferSyntaxUid, body, stored };
    // A failed store stops consuming the body; destroying it releases a paused socket, and the rest of the
    // message is discarded by the sink.
    stored.catch((err: unknown) => {
      if (!body.destroyed) body.destroy(err instanceof Error ? err : new Error(String(err)));
    });
    this.inFlight.add(receipt);
    this.receipts.set(request, receipt);
    return new InstanceSink(body, this.tcp);
  }

  override createDatasetFromStoreWritableStream(
    _writable: Writable,
    _context: PresentationContext,
    callback: (dataset: InstanceType<typeof dimse.Dataset>) => void,
  ): void {
    // The bytes went to storage as received; parsing them here would only cost time and memory.
    callback(new dimse.Dataset());
  }

  override cStoreRequest(request: CStoreRequest, callback: (response: CStoreResponse) => void): void {
    const receipt = this.receipts.get(request);
    this.receipts.delete(request);
    const answer = (status: number) => {
      if (this.tcp.destroyed) return;
      const response = dimse.responses.CStoreResponse.fromRequest(request);
      response.setStatus(status);
      callback(response);
    };
    if (!receipt || 'why' in receipt) {
      this.counts.refused++;
      this.log.warn({ status: receipt?.status, why: receipt?.why ?? 'no data set' }, 'C-STORE refused');
      answer(receipt?.status ?? STATUS_CANNOT_UNDERSTAND);
      return;
    }
    const commit = this.recording
      .then(() => this.commit(receipt))
      .catch((err: unknown) => {
        this.log.error({ err }, 'C-STORE failed');
        return STATUS_OUT_OF_RESOURCES;
      });
    this.recording = commit;
    void commit.then(answer);
  }

  /** Waits for the object to be stored, then commits its row; the answer is Success only after both. */
  private async commit(receipt: Receipt): Promise<number> {
    const upload = this.upload;
    const log = this.log.child({ sopInstanceUid: receipt.sopInstanceUid });
    let stored: StoredObject;
    try {
      stored = await receipt.stored;
    } catch (err) {
      this.counts.failed++;
      log.error({ err }, 'C-STORE failed: the instance could not be stored');
      return STATUS_OUT_OF_RESOURCES;
    } finally {
      this.inFlight.delete(receipt);
    }
    if (!upload) return STATUS_OUT_OF_RESOURCES;
    try {
      await recordFiles(this.deps.ctx, upload, [stored], { createUpload: !this.uploadCreated });
      this.uploadCreated = true;
    } catch (err) {
      // recordFiles commits, then enqueues. A failed enqueue leaves a committed row that the sweep enqueues
      // later, so the instance is safe; only a failed commit is a failure, and only then may the object go.
      const committed = await this.deps.ctx.db
        .selectFrom('files')
        .select('id')
        .where('id', '=', stored.id)
        .executeTakeFirst()
        .then(
          (row) => (row ? 'yes' : 'no'),
          () => 'unknown',
        );
      if (committed === 'yes') {
        this.uploadCreated = true;
        log.warn(
          { err, fileId: stored.id },
          'instance committed but its ingest was not enqueued; the sweep will',
        );
      } else {
        this.counts.failed++;
        // When the commit cannot be verified the object stays: an orphan object is harmless, a row without
        // its object is not.
        if (committed === 'no') {
          await this.deps.ctx.storage
            .delete(stored.key)
            .catch((e: unknown) => log.warn({ err: e }, 'could not delete an unrecorded object'));
        }
        log.error({ err }, 'C-STORE failed: the instance could not be recorded');
        return STATUS_OUT_OF_RESOURCES;
      }
    }
    this.counts.stored++;
    log.info(
      { fileId: stored.id, bytes: stored.bytes, transferSyntaxUid: receipt.transferSyntaxUid },
      'instance stored',
    );
    return Status.Success;
  }

  // Only Verification and Storage contexts are accepted; any other DIMSE service on them is answered as such.
  override cFindRequest(
    request: dimseRequests.CFindRequest,
    callback: (responses: dimseResponses.CFindResponse[]) => void,
  ): void {
    callback([this.unrecognised(dimse.responses.CFindResponse.fromRequest(request))]);
  }
  override cMoveRequest(
    request: dimseRequests.CMoveRequest,
    callback: (responses: dimseResponses.CMoveResponse[]) => void,
  ): void {
    callback([this.unrecognised(dimse.responses.CMoveResponse.fromRequest(request))]);
  }
  override cGetRequest(
    request: dimseRequests.CGetRequest,
    callback: (responses: dimseResponses.CGetResponse[]) => void,
  ): void {
    callback([this.unrecognised(dimse.responses.CGetResponse.fromRequest(request))]);
  }
  override nCreateRequest(
    request: dimseRequests.NCreateRequest,
    callback: (response: dimseResponses.NCreateResponse) => void,
  ): void {
    callback(this.unrecognised(dimse.responses.NCreateResponse.fromRequest(request)));
  }
  override nActionRequest(
    request: dimseRequests.NActionRequest,
    callback: (response: dimseResponses.NActionResponse) => void,
  ): void {
    callback(this.unrecognised(dimse.responses.NActionResponse.fromRequest(request)));
  }
  override nDeleteRequest(
    request: dimseRequests.NDeleteRequest,
    callback: (response: dimseResponses.NDeleteResponse) => void,
  ): void {
    callback(this.unrecognised(dimse.responses.NDeleteResponse.fromRequest(request)));
  }
  override nEventReportRequest(
    request: dimseRequests.NEventReportRequest,
    callback: (response: dimseResponses.NEventReportResponse) => void,
  ): void {
    callback(this.unrecognised(dimse.responses.NEventReportResponse.fromRequest(request)));
  }
  override nGetRequest(
    request: dimseRequests.NGetRequest,
    callback: (response: dimseResponses.NGetResponse) => void,
  ): void {
    callback(this.unrecognised(dimse.responses.NGetResponse.fromRequest(request)));
  }
  override nSetRequest(
    request: dimseRequests.NSetRequest,
    callback: (response: dimseResponses.NSetResponse) => void,
  ): void {
    callback(this.unrecognised(dimse.responses.NSetResponse.fromRequest(request)));
  }
  override cCancelRequest(_request: dimseRequests.CCancelRequest): void {
    // Nothing is cancellable: each C-STORE is answered once its instance is committed.
  }

  private unrecognised<R extends dimseResponses.Response>(response: R): R {
    this.log.warn({ command: response.getCommandFieldType() }, 'unsupported DIMSE operation');
    response.setStatus(Status.UnrecognizedOperation);
    return response;
  }

  /** Shutdown after the grace period: A-ABORT, then close. Instances not yet committed are not answered, so the
   * SCU knows to send them again. */
  abortForShutdown(): void {
    if (this.tcp.destroyed) return;
    this.log.warn({ ...this.counts }, 'association aborted: the listener is shutting down');
    if (this.state === 'accepted') this.sendAbort(AbortSource.ServiceProvider, AbortReason.NotSpecified);
    this.state = 'ended';
    this.stopInFlight('listener shutting down');
    this.tcp.end();
    setTimeout(() => this.tcp.destroy(), 1_000).unref();
  }

  private reject(result: number, source: number, reason: number): void {
    this.state = 'ended';
    if (this.tcp.destroyed) return;
    this.sendAssociationReject(result, source, reason);
    this.closeAfterArtim();
  }

  /** The peer closes the connection after A-RELEASE-RP or A-ASSOCIATE-RJ; one that does not is cut off. */
  private closeAfterArtim(): void {
    setTimeout(() => this.tcp.destroy(), ARTIM_MS).unref();
  }

  private drop(why: string): void {
    if (this.tcp.destroyed) return;
    this.log.warn({ why, ...this.counts }, 'connection dropped');
    this.state = 'ended';
    this.stopInFlight(why);
    this.tcp.destroy();
  }

  /** Half-received instances are abandoned: destroying their bodies makes the store drop its temporary data.
   * An instance received whole is still committed: the SCU, unanswered, sends it again and ingest keeps one. */
  private stopInFlight(why: string): void {
    for (const receipt of this.inFlight) {
      if (!receipt.body.destroyed && !receipt.body.writableEnded) {
        receipt.body.destroy(new Error(`instance not received whole: ${why}`));
      }
    }
  }

  private onClose(): void {
    this.stopInFlight('connection closed');
    if (this.state === 'accepted') {
      this.log.warn({ ...this.counts }, 'connection closed without A-RELEASE');
    }
    this.state = 'ended';
    this.closedResolve();
  }
}
