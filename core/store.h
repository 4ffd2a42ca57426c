// The store writer. Every change: lock → database written (the commit point) → generation
// bumped → the touched areas reconciled from the database → generation bumped. A crash at
// any instant leaves each file old or new (atomic replace), and `sync` brings disk back to
// the database, which is the source of truth.
#pragma once

#include <ctime>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/cert.h"
#include "core/config.h"
#include "core/db.h"
#include "core/exchange.h"
#include "core/fs.h"
#include "core/reconcile.h"
#include "core/records.h"
#include "core/selection.h"

namespace ptrust {

struct InstallRequest {
  CertType type;
  std::vector<std::string> purposes;  // validated names; empty = general (CA only)
};

struct CrlInstallResult {
  CrlRecord record;
  // The installed CRL of the same issuer and scope (and kind: complete or delta) it replaced,
  // in the same change, and the crlNumbers of both ("" = none).
  std::optional<CrlRecord> replaced;
  std::string replaced_number, number;
  std::vector<CrlRecord> dropped;  // older CRLs of that issuer and scope, and deltas of a replaced base
  CrlSigner::How signer = CrlSigner::How::kUnchecked;
  std::vector<std::string> warnings;  // past its nextUpdate, not yet valid, signature not checked
};

struct CrlRemoval {
  CrlRecord record;
  std::vector<CrlRecord> dropped;  // the deltas of a removed complete CRL, removed with it
};

// Whether a CRL is usable now, and which purposes fail verification because of it.
struct CrlStatus {
  enum class State { kOk, kExpired, kNotYetValid };
  State state = State::kOk;
  // The purposes that verify with this CRL (mode ca/general by the records, crl-policy not off,
  // in its scope; "general" for an unscoped one when general CAs exist).
  std::vector<std::string> checking;
  // Of those, the ones whose verification fails while it is in `state`: expired, those without
  // allow-expired-crl; not yet valid, all. None for a delta CRL: OpenSSL skips an unusable delta.
  std::vector<std::string> failing;
};
std::string_view to_string(CrlStatus::State s) noexcept;  // ok / expired / not-yet-valid
CrlStatus crl_status(const Config& cfg, const Database& db, const CrlRecord& crl, std::time_t now);
CrlStatus crl_status(const Config& cfg, const Shapes& shapes, const CrlRecord& crl, std::time_t now);

// A purpose whose mode a change moves (selection.h: pinned > ca > general > none).
struct ModeChange {
  std::string purpose;
  Mode before = Mode::kNone, after = Mode::kNone;
  // Trust gets wider: pinned -> ca or general, ca -> general. From none, a purpose only gains
  // what was installed for it; to none, it fails closed.
  bool widens() const noexcept;
};

// Each declared purpose's mode as `db` selects it (the selection rule on records, not disk).
Mode mode_in(const Database& db, std::string_view purpose);
Mode mode_in(const Shapes& shapes, std::string_view purpose);

// `sync --adopt`: the records adopted from disk, then what the sync that followed repaired.
struct AdoptResult {
  Database adopted;
  std::vector<std::string> warnings;
  std::vector<Drift> repaired;
};

class Store {
 public:
  explicit Store(Context ctx);

  const Context& context() const noexcept { return ctx_; }

  // Every writer computes each declared purpose's mode before and after its change. One that
  // widens a purpose's trust is refused with MODE_CHANGE_WIDENS_TRUST (nothing written) unless
  // allowed here; the changes of the last write, widening or not, are kept for the caller to
  // report.
  void allow_mode_change(bool allow) noexcept { allow_mode_change_ = allow; }
  const std::vector<ModeChange>& mode_changes() const noexcept { return mode_changes_; }
  Database database() const;

  // Trusted certificates. Refusals: NOT_A_CA_CERTIFICATE, CERTIFICATE_LACKS_PURPOSE,
  // UNKNOWN_PURPOSE, TRUSTED_CERTIFICATE_EXPIRED / _NOT_VALID_YET,
  // TRUSTED_CERTIFICATE_ALREADY_EXISTS. Nothing is written when it refuses.
  CertRecord install(const Certificate& cert, const InstallRequest& req, std::time_t now);
  // Every certificate of a bundle as its own record, in one change: all or nothing, each
  // checked as install() checks one (and no two alike); the first refusal names its place.
  std::vector<CertRecord> install_each(const std::vector<Certificate>& certs, const InstallRequest& req, std::time_t now);
  // TRUSTED_CERTIFICATE_NOT_FOUND, or TRUSTED_CERTIFICATE_FILE_MISSING unless `force`.
  CertRecord uninstall(const std::string& uuid, bool force);

  // CRLs: CRL_INVALID, CRL_NAME_INVALID, CRL_ALREADY_EXISTS, CRL_SIGNATURE_INVALID,
  // CRL_NOT_NEWER, CRL_DELTA_WITHOUT_BASE. An empty `name` derives one from the issuer, or
  // keeps the name of the CRL it replaces. A CRL newer (higher crlNumber when both have one,
  // else later thisUpdate) than the installed one of the same issuer (X509_NAME_cmp), scope
  // (purpose set) and kind (complete or delta) replaces it in one change; an older or equal one
  // is CRL_NOT_NEWER. A delta needs a complete CRL of its issuer and scope whose crlNumber is
  // at least its BaseCRLNumber; a complete CRL drops the deltas whose base is below its number.
  // `issuers` (--issuer): the only candidates for the signature check (check_crl_signature).
  CrlInstallResult crl_install(std::string_view data, const std::string& name, const std::vector<std::string>& purposes,
                               std::time_t now, const std::vector<Certificate>& issuers = {});
  // CRL_DOES_NOT_EXIST. A complete CRL takes with it the deltas no remaining complete CRL of
  // its issuer and scope is a base for.
  CrlRemoval crl_uninstall(const std::string& name);

  // Legacy CAs (deprecated xapi API): CERTIFICATE_NAME_INVALID, CA_CERTIFICATE_ALREADY_EXISTS,
  // CERTIFICATE_DOES_NOT_EXIST (TRUSTED_CERTIFICATE_FILE_MISSING unless `force`).
  LegacyRecord legacy_install(const std::string& name, const Certificate& cert, std::time_t now);
  LegacyRecord legacy_uninstall(const std::string& name, bool force);

  // Pool members' certificates; `staged` is the <uuid>.new.pem of a rotation.
  PoolRecord pool_add(const std::string& host, const Certificate& cert, bool staged, std::time_t now);
  std::vector<PoolRecord> pool_remove(const std::string& host, bool staged_only);

  // Pool exchange: the document is JSON (see exchange.h). All or nothing.
  std::string export_document() const;
  ImportPlan import_document(const std::string& doc, bool dry_run);
  // The same validation and writer, but the stores end up holding exactly the document's
  // objects (replace_import): what it no longer names is removed. One change, all or nothing;
  // nothing is written when the result equals the database.
  ImportPlan replace_document(const std::string& doc);
  // Empties the trusted, legacy and CRL stores and their records (pool kept).
  Database eject();

  // Compares disk with the database; with `apply`, repairs every difference.
  // Returns what differed (before repair). DATABASE_MISSING when db.json is missing (or
  // empty) while the stores hold material: repairing from nothing would delete them all.
  std::vector<Drift> sync(bool apply);
  // sync(false) that also hands over the database it compared the stores with: a report
  // (status, the daemon) needs both, and at 10,000 certificates each load of db.json costs
  // ~1 s and tens of MiB at its peak. `db` is set only when no refusal is thrown.
  std::vector<Drift> check(Database& db);

  // Recovery from DATABASE_MISSING: adopts every store file (core/adopt.h), commits the
  // records, then syncs. USAGE when the root has a database with records.
  AdoptResult adopt(std::time_t now);

  // Runs `fn(state_dir)` (the state directory's descriptor) under the writer lock, creating
  // both when missing: for state the helper keeps beside the stores whose writers must not
  // interleave with each other or with a store change (stunnel sync's records). Same wait
  // as every writer (30 s, then LOCK_FAILED); the database is not read and the generation
  // does not move. `fn` must not take another Store lock: flock locks per open file, so it
  // would wait for itself.
  void with_state_lock(const std::function<void(int state_dir)>& fn);

 private:
  struct Locked;
  struct Narrow;
  // Commits `db` (already validated) and reconciles `areas`, under the held lock.
  // `before`: the database before the change (only what it moved is read back from disk).
  // `narrow`: a narrow write's marks and bundles (write_narrow).
  void commit(Locked& l, const std::vector<Area>& areas, const Database* before, const Narrow* narrow = nullptr);
  // `full_capath` (sync): every capath entry is compared and repaired, not only the
  // directories `areas` can affect. `narrow`: each trusted store's bundle (write_narrow).
  void apply(Locked& l, const std::vector<Area>& areas, bool full_capath = false, const Database* before = nullptr,
             const std::map<layout::StoreKey, StoreBundle>* narrow = nullptr);
  // Every writer: `check` (throws the refusal) runs on a read view first, so a refusal
  // creates nothing, then again under the writer lock; `change` edits the database and
  // returns the areas to rewrite; then commit. Every `change` runs right after a `check` of
  // the same database, so a check may hand its change what it computed (import's merge). A
  // `check` that returns bool may say "nothing to do" (false): then nothing is locked,
  // written or bumped (no-op import and eject).
  //
  // `narrow` (install, uninstall, crl install and uninstall): the writer's check and change
  // need only the certificate records it selects (with every CRL, legacy and pool record):
  // the write reads those and the shapes of all, so that it costs what its change does, not
  // what the store holds (write_narrow), whenever it can.
  template <typename Check, typename Change>
  void write(bool create, Check check, Change change, const CertSelector* narrow = nullptr);
  template <typename Check, typename Change>
  bool write_narrow(const CertSelector& sel, Check& check, Change& change);
  void guard_modes(std::vector<ModeChange> changes);
  // sync's body under the held lock: state files and directories, every area, capath.
  std::vector<Drift> drift(Locked& l, bool repair);

  Context ctx_;
  fs::Fd root_;
  bool allow_mode_change_ = false;
  bool batch_writes_ = false;  // import: apply() makes its files durable in one pass (fs::Batch)
  std::vector<ModeChange> mode_changes_;
  // During a narrow write's change: the shapes of every certificate record (its database
  // holds only the records it selected). crl_install reads it for the CRL's status.
  std::optional<Shapes> narrow_shapes_;
};

}  // namespace ptrust
