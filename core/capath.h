// Per-purpose OpenSSL hashed directories for programs that only know CApath or default
// verify paths (python's ssl.create_default_context, curl --capath, stunnel CApath):
//
//   <root>/etc/trusted-certs/capath/<purpose>/   one per declared purpose and `general`
//       <subject-hash>.<n>    PEM certificate  (pinned: the pins; ca/general: the bundle's CAs)
//       <issuer-hash>.r<n>    PEM CRL          (ca/general only, by crl-scope; none if crl-policy off)
//       .ptrust-capath        manifest (mode + SHA-256 of every entry); OpenSSL never opens it
//   <root>/etc/trusted-certs/capath/no-ca.pem     one empty CRL and no certificate: a CA file
//                                                 that trusts nothing (curl --cacert)
//
// A purpose's directory is always complete: a reader sees the old selection or the new one.
// A change that is one step for a reader (one entry created, replaced, removed, or renamed
// onto another) is made in place, so a write costs the same in a directory of 10 or 10,000
// entries; any other change, or a directory that is not exactly what its manifest says
// (a killed writer's leftovers, drift), gets a new tree built under a temp name, fsynced and
// swapped in with renameat2(RENAME_EXCHANGE); then the old tree is removed. Mode none is an
// empty directory, never a missing one. Entries are new files or hard links (to the previous
// tree's entry, or to the chosen store's hash entry of the same name and bytes), never symlinks.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/layout.h"
#include "core/reconcile.h"
#include "core/selection.h"

namespace ptrust {

namespace capath {

// One object of a selection: its DER and the OpenSSL name hash its hash entry is named by
// (subject hash for a certificate, issuer hash for a CRL).
struct Object {
  std::string der;
  unsigned long hash = 0;
};

struct Selected {
  Mode mode = Mode::kNone;
  std::vector<Object> certs;  // pinned certificates, or the chosen bundle's CAs, in bundle order
  std::vector<Object> crls;   // CRLs that apply to the purpose under its crl-policy (ca/general only)
};

// What `purpose` (declared or "general") trusts right now, as every consumer sees it: the
// purpose's TrustState (core/trust.h). Throws its failure (STORE_CORRUPT, ...): callers turn
// it into an empty (fail-closed) directory.
Selected selected(const Context& ctx, std::string_view purpose);

// Every purpose that has a directory: the declared ones and "general", sorted.
std::vector<std::string> purposes(const Config& cfg);

// The purposes whose selection a change of `areas` can affect: a store of purpose p → p; of
// general, the CRLs or the top of etc/trusted-certs → every purpose; legacy/pool → none.
std::vector<std::string> affected(const Config& cfg, const std::vector<Area>& areas);

// Inside a store change, after the areas were reconciled: brings the directories of the
// affected purposes (and any declared purpose that has none yet) up to date, skipping those
// whose manifest already matches; removes temp directories of a killed writer.
// `changes` (a writer's, from reconcile): when the change is one CA store of a purpose in ca
// mode, its directory's change is derived from what the store's change moved (the other
// entries and the CRLs checked against the manifest) instead of from the whole selection.
// `prepared`: the step of the one CA store's purpose, prepared while the stores were written.
class Prepared;
void refresh(int root, const Context& ctx, const std::vector<Area>& areas,
             const std::vector<StoreChange>* changes = nullptr, Prepared* prepared = nullptr);

// A writer's CA-directory step, prepared on another thread while its stores are written
// (Store::apply): for a change of one CA store of a declared purpose (refresh's derived case,
// install and uninstall) the purpose directory's manifest is read, the step derived from the
// change, and the directory listed. None of that reads what the stores' writing changes (the
// manifest, the CRLs, the cluster-CA minimum, the change itself), and at 10,000 CAs it is as
// long as writing the bundle. refresh() takes it for that purpose; any failure there means
// refresh does the work itself, as it would have.
class Prepared {
 public:
  Prepared(int root, const Context& ctx, const StoreChange& change);
  ~Prepared();
  Prepared(const Prepared&) = delete;
  Prepared& operator=(const Prepared&) = delete;
  struct Impl;

 private:
  friend void refresh(int, const Context&, const std::vector<Area>&, const std::vector<StoreChange>*, Prepared*);
  std::unique_ptr<Impl> impl_;
};

// `sync`: compares every entry of etc/trusted-certs/capath with the selection (content, types,
// modes, remnants, undeclared purposes, symlinks); with `apply`, repairs each difference
// (a purpose directory with any drift is rebuilt and swapped in whole).
void reconcile(int root, const Context& ctx, bool apply, std::vector<Drift>& out);

// True when `drift` (of the other areas) touches what the directories derive from: the
// trusted stores, the CRLs or their scope index. Their capath drift is then only knowable
// after those are repaired.
bool inputs_drift(const std::vector<Drift>& drift);

// The fixed content of no-ca.pem (one empty CRL, no certificate; the same on every host).
const std::string& no_ca_pem();

}  // namespace capath
}  // namespace ptrust
