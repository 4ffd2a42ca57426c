// Prometheus metrics of a status Report. The x509_* names and labels are
// x509-certificate-exporter's, so the alert rules and dashboards its users run work unchanged;
// ptrust_* are ptrust's own. prometheus-cpp writes the text exposition format (escaping,
// ordering, HELP/TYPE lines); ptrust only fills in the families.
#include <sstream>

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include "helper/status.h"

namespace ptrust::status {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

MetricFamily family(std::string name, std::string help, MetricType type = MetricType::Gauge) {
  return MetricFamily{std::move(name), std::move(help), type, {}};
}

void gauge(MetricFamily& f, Labels labels, double v) {
  ClientMetric m;
  m.label = std::move(labels);
  if (f.type == MetricType::Counter) m.counter.value = v;
  else m.gauge.value = v;
  f.metric.push_back(std::move(m));
}

std::string purposes_label(const CertEntry& c) {
  if (c.kind != "ca" && c.kind != "pinned") return "";
  if (c.purposes.empty()) return "general";
  std::string out;
  for (const auto& p : c.purposes) out += (out.empty() ? "" : ",") + p;
  return out;
}

}  // namespace

std::string verdict_metrics(const Report& r) {
  MetricFamily verify = family("ptrust_verify_total", "Verdicts of the hooks that publish counters, by purpose and reason",
                               MetricType::Counter);
  for (const auto& p : r.purposes)
    for (const auto& [reason, n] : p.verdicts) gauge(verify, {{"purpose", p.name}, {"reason", reason}}, static_cast<double>(n));
  std::ostringstream os;
  prometheus::TextSerializer().Serialize(os, {verify});
  return os.str();
}

std::string metrics(const Report& r, bool verdicts) {
  std::vector<MetricFamily> fs;
  MetricFamily not_after = family("x509_cert_not_after", "Certificate notAfter, seconds since the epoch");
  MetricFamily not_before = family("x509_cert_not_before", "Certificate notBefore, seconds since the epoch");
  MetricFamily expired = family("x509_cert_expired", "1 when the certificate has expired");
  for (const auto& c : r.certs) {
    Labels l{{"subject_CN", c.subject_cn}, {"issuer_CN", c.issuer_cn}, {"serial_number", c.serial},
             {"filepath", c.filepath}, {"purpose", purposes_label(c)}, {"type", c.kind}};
    gauge(not_after, l, static_cast<double>(c.not_after));
    gauge(not_before, l, static_cast<double>(c.not_before));
    gauge(expired, l, c.not_after <= r.now ? 1 : 0);
  }
  MetricFamily this_update = family("x509_crl_this_update", "CRL thisUpdate, seconds since the epoch");
  MetricFamily next_update = family("x509_crl_next_update", "CRL nextUpdate, seconds since the epoch (0: none)");
  MetricFamily stale = family("x509_crl_stale", "1 when the CRL's nextUpdate has passed");
  MetricFamily number = family("x509_crl_number", "CRL crlNumber");
  for (const auto& c : r.crls) {
    Labels l{{"issuer_CN", c.issuer_cn}, {"filepath", c.filepath}};
    gauge(this_update, l, static_cast<double>(c.this_update));
    gauge(next_update, l, static_cast<double>(c.next_update));
    gauge(stale, l, c.stale ? 1 : 0);
    if (!c.crl_number.empty()) gauge(number, l, std::strtod(c.crl_number.c_str(), nullptr));
  }
  MetricFamily generation = family("ptrust_store_generation", "The store's generation counter");
  gauge(generation, {}, static_cast<double>(r.generation));
  MetricFamily mode = family("ptrust_purpose_mode", "1 for the mode each purpose is verified in");
  MetricFamily failing = family("ptrust_purpose_failing", "1 when every verification of the purpose fails (store unusable)");
  for (const auto& p : r.purposes) {
    for (const char* m : {"pinned", "ca", "general", "none"})
      gauge(mode, {{"purpose", p.name}, {"mode", m}}, p.mode == m ? 1 : 0);
    gauge(failing, {{"purpose", p.name}}, p.failure ? 1 : 0);
  }
  MetricFamily drift = family("ptrust_drift", "Differences between the stores and the database, by kind (sync --check)");
  for (auto k : {Drift::Kind::kMissing, Drift::Kind::kRemnant, Drift::Kind::kStale, Drift::Kind::kMode, Drift::Kind::kUnsafe}) {
    std::size_t n = 0;
    for (const auto& d : r.drift) n += d.kind == k;
    gauge(drift, {{"kind", std::string(to_string(k))}}, static_cast<double>(n));
  }
  MetricFamily consumer = family("ptrust_consumer_state", "1 for each consumer's state (ok, update_available, reload_needed)");
  for (const auto& c : r.consumers)
    for (const char* s : {"ok", "update_available", "reload_needed"})
      gauge(consumer, {{"consumer", c.name}, {"state", s}}, c.state == s ? 1 : 0);
  for (auto* f : {&not_after, &not_before, &expired, &this_update, &next_update, &stale, &number, &generation, &mode,
                  &failing, &drift, &consumer})
    fs.push_back(std::move(*f));
  std::ostringstream os;
  prometheus::TextSerializer().Serialize(os, fs);
  return verdicts ? os.str() + verdict_metrics(r) : os.str();
}

}  // namespace ptrust::status
