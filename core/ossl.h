// One RAII alias per OpenSSL type, in one place (see STYLE.md #4).
#pragma once

#include <memory>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace ptrust::ossl {

template <auto Free>
struct Deleter {
  template <typename T>
  void operator()(T* p) const noexcept { Free(p); }
};

template <typename T, auto Free>
using Ptr = std::unique_ptr<T, Deleter<Free>>;

using BioPtr = Ptr<BIO, BIO_free_all>;
using BnPtr = Ptr<BIGNUM, BN_free>;
using EvpMdCtxPtr = Ptr<EVP_MD_CTX, EVP_MD_CTX_free>;
using X509Ptr = Ptr<X509, X509_free>;
using X509CrlPtr = Ptr<X509_CRL, X509_CRL_free>;
using X509NamePtr = Ptr<X509_NAME, X509_NAME_free>;
using X509ReqPtr = Ptr<X509_REQ, X509_REQ_free>;
using X509ExtensionPtr = Ptr<X509_EXTENSION, X509_EXTENSION_free>;
using X509SigPtr = Ptr<X509_SIG, X509_SIG_free>;  // encrypted PKCS#8
using Pkcs8PrivKeyInfoPtr = Ptr<PKCS8_PRIV_KEY_INFO, PKCS8_PRIV_KEY_INFO_free>;
using X509StorePtr = Ptr<X509_STORE, X509_STORE_free>;
using X509StoreCtxPtr = Ptr<X509_STORE_CTX, X509_STORE_CTX_free>;
using PkeyPtr = Ptr<EVP_PKEY, EVP_PKEY_free>;
using SslCtxPtr = Ptr<SSL_CTX, SSL_CTX_free>;
using SslPtr = Ptr<SSL, SSL_free>;
using LibCtxPtr = Ptr<OSSL_LIB_CTX, OSSL_LIB_CTX_free>;

// OPENSSL_free is a macro; wrap it so it can be a template argument.
inline void openssl_free(void* p) noexcept { OPENSSL_free(p); }
using OsslStr = Ptr<char, openssl_free>;

inline void x509_stack_free(STACK_OF(X509) * s) noexcept { sk_X509_pop_free(s, X509_free); }
using X509StackPtr = Ptr<STACK_OF(X509), x509_stack_free>;

inline void x509_crl_stack_free(STACK_OF(X509_CRL) * s) noexcept { sk_X509_CRL_pop_free(s, X509_CRL_free); }
using X509CrlStackPtr = Ptr<STACK_OF(X509_CRL), x509_crl_stack_free>;

}  // namespace ptrust::ossl
