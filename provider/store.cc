// The OSSL_STORE loader for ptrust://PURPOSE.
//
// open() does all the work that can fail (URI, purpose, selection, reading and parsing
// the chosen bundle and CRLs), so a broken store makes OSSL_STORE_open fail with a reason
// in the error queue instead of looking like an empty store. load() then only hands out
// DER from an immutable snapshot; libcrypto decodes certificates and CRLs itself.
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/store.h>
#include <strings.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "provider/provider.h"

namespace ptrust::provider {

namespace {

OSSL_FUNC_store_open_fn store_open;
OSSL_FUNC_store_settable_ctx_params_fn store_settable_ctx_params;
OSSL_FUNC_store_set_ctx_params_fn store_set_ctx_params;
OSSL_FUNC_store_load_fn store_load;
OSSL_FUNC_store_eof_fn store_eof;
OSSL_FUNC_store_close_fn store_close;

constexpr std::string_view kScheme = "ptrust://";

struct LoaderCtx {
  ProvCtx* prov;
  std::shared_ptr<const StoreView> view;
  ossl::X509NamePtr subject;  // OSSL_STORE_PARAM_SUBJECT, if given
  int expect = 0;       // OSSL_STORE_PARAM_EXPECT, 0 = anything
  bool selected = false;
  std::vector<const Object*> objects;  // what load() returns, fixed at the first load/eof
  size_t next = 0;

  void select() {
    if (selected) return;
    objects = view->select(subject.get(), expect);
    selected = true;
  }
};

// "ptrust://PURPOSE" → PURPOSE. The scheme is case-insensitive like every URI scheme;
// the purpose is exact (the name grammar is lower-case). Anything else after the scheme
// (path, query, authority with a port, ...) is refused rather than guessed at.
std::optional<std::string> parse_uri(std::string_view uri) {
  if (uri.size() <= kScheme.size() || ::strncasecmp(uri.data(), kScheme.data(), kScheme.size()) != 0)
    return std::nullopt;
  std::string purpose(uri.substr(kScheme.size()));
  if (purpose != kGeneral && !valid_purpose_name(purpose)) return std::nullopt;
  return purpose;
}

void* store_open(void* provctx, const char* uri) {
  auto* prov = static_cast<ProvCtx*>(provctx);
  // Parsing and loading may push libcrypto errors of their own; a successful open leaves
  // the queue as it found it, a failed one leaves exactly our reason.
  ERR_set_mark();
  try {
    auto purpose = parse_uri(uri == nullptr ? "" : uri);
    if (!purpose) {
      ERR_pop_to_mark();
      PTRUST_RAISE(prov->errors, kReasonMalformedUri,
                   "'" + std::string(uri == nullptr ? "" : uri) + "': expected ptrust://PURPOSE or ptrust://general");
      return nullptr;
    }
    auto loader = std::make_unique<LoaderCtx>();
    loader->prov = prov;
    loader->view = prov->view(*purpose);
    ERR_pop_to_mark();
    return loader.release();
  } catch (...) {
    ERR_pop_to_mark();
    PTRUST_RAISE_CURRENT(prov->errors);
    return nullptr;
  }
}

const OSSL_PARAM* store_settable_ctx_params(void*) {
  static const OSSL_PARAM kSettable[] = {
      OSSL_PARAM_octet_string(OSSL_STORE_PARAM_SUBJECT, nullptr, 0),
      OSSL_PARAM_int(OSSL_STORE_PARAM_EXPECT, nullptr),
      OSSL_PARAM_END,
  };
  return kSettable;
}

int set_ctx_params(LoaderCtx* l, const OSSL_PARAM params[]);

int store_set_ctx_params(void* loaderctx, const OSSL_PARAM params[]) {
  auto* l = static_cast<LoaderCtx*>(loaderctx);
  try {  // no exception may reach libcrypto
    return set_ctx_params(l, params);
  } catch (...) {
    PTRUST_RAISE_CURRENT(l->prov->errors);
    return 0;
  }
}

int set_ctx_params(LoaderCtx* l, const OSSL_PARAM params[]) {
  if (params == nullptr) return 1;
  if (l->selected) {
    PTRUST_RAISE(l->prov->errors, kReasonInvalidArgument, "search parameters set after loading started");
    return 0;
  }
  if (const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_EXPECT)) {
    if (!OSSL_PARAM_get_int(p, &l->expect)) {
      PTRUST_RAISE(l->prov->errors, kReasonInvalidArgument, "EXPECT is not an integer");
      return 0;
    }
  }
  if (const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_SUBJECT)) {
    const void* der = nullptr;
    size_t len = 0;
    ERR_set_mark();
    ossl::X509NamePtr name;
    if (OSSL_PARAM_get_octet_string_ptr(p, &der, &len)) {
      auto* q = static_cast<const unsigned char*>(der);
      name.reset(d2i_X509_NAME(nullptr, &q, static_cast<long>(len)));
      if (name && q != static_cast<const unsigned char*>(der) + len) name.reset();
    }
    ERR_pop_to_mark();
    if (!name) {
      PTRUST_RAISE(l->prov->errors, kReasonInvalidArgument, "SUBJECT is not a DER-encoded X.509 name");
      return 0;
    }
    l->subject = std::move(name);
  }
  return 1;
}

int store_load(void* loaderctx, OSSL_CALLBACK* object_cb, void* object_cbarg, OSSL_PASSPHRASE_CALLBACK*, void*) {
  auto* l = static_cast<LoaderCtx*>(loaderctx);
  try {
    l->select();
  } catch (...) {
    PTRUST_RAISE_CURRENT(l->prov->errors);
    return 0;
  }
  if (l->next >= l->objects.size()) return 0;
  const Object* o = l->objects[l->next++];
  int type = o->type;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type),
      OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA, const_cast<char*>(o->der.data()), o->der.size()),
      OSSL_PARAM_construct_end(),
  };
  return object_cb(params, object_cbarg);
}

int store_eof(void* loaderctx) {
  auto* l = static_cast<LoaderCtx*>(loaderctx);
  try {
    l->select();
  } catch (...) {
    PTRUST_RAISE_CURRENT(l->prov->errors);
    return 1;
  }
  return l->next >= l->objects.size();
}

int store_close(void* loaderctx) {
  delete static_cast<LoaderCtx*>(loaderctx);
  return 1;
}

}  // namespace

std::shared_ptr<const StoreView> ProvCtx::view(const std::string& purpose) {
  const TrustStamp now = source.stamp();
  std::shared_ptr<const StoreView> v;
  if (TrustSlot<StoreView>* slot = slots.find_slot(purpose)) {
    v = slot->get(source, purpose, now);  // a purpose removed since fails in its state (UNKNOWN_PURPOSE)
  } else {
    std::shared_ptr<const TrustSource::Configured> c = source.configured();
    if (!c->ctx) throw Error(c->code, c->error);
    if (purpose == kGeneral || c->ctx->config.declares(purpose)) {
      v = slots.at(purpose).get(source, purpose, now);
    } else if (auto s = source.build(purpose, now)) {
      v = std::make_shared<const StoreView>(std::move(s));  // an undeclared name gets no slot
    }
  }
  if (!v) throw std::bad_alloc();
  const TrustState& s = v->state();
  if (s.failed()) throw Error(*s.failure, s.failure_message);
  refuse_ca_pins_for_chain_consumers(s);  // X509_STORE builds chains from what we serve
  return v;
}

const OSSL_DISPATCH kStoreFunctions[] = {
    {OSSL_FUNC_STORE_OPEN, reinterpret_cast<void (*)()>(store_open)},
    {OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS, reinterpret_cast<void (*)()>(store_settable_ctx_params)},
    {OSSL_FUNC_STORE_SET_CTX_PARAMS, reinterpret_cast<void (*)()>(store_set_ctx_params)},
    {OSSL_FUNC_STORE_LOAD, reinterpret_cast<void (*)()>(store_load)},
    {OSSL_FUNC_STORE_EOF, reinterpret_cast<void (*)()>(store_eof)},
    {OSSL_FUNC_STORE_CLOSE, reinterpret_cast<void (*)()>(store_close)},
    {0, nullptr},
};

}  // namespace ptrust::provider
