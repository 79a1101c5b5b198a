#!/bin/sh
# The deployment's first certificate for TLS_DOMAIN, unless the volume already holds one.
set -eu
: "${TLS_DOMAIN:?set TLS_DOMAIN in .env}"
: "${TLS_EMAIL:?set TLS_EMAIL in .env}"
if [ -f "/etc/letsencrypt/live/${TLS_DOMAIN}/fullchain.pem" ]; then
  echo "certificate for ${TLS_DOMAIN} present; renewals are tls_cert_check's"
  exit 0
fi
exec certbot certonly --standalone --non-interactive --agree-tos \
  --email "${TLS_EMAIL}" --domain "${TLS_DOMAIN}" --keep-until-expiring
