#!/bin/sh
# The certbot service of docker-compose.yaml: it stays up so that tls_cert_check renews in it
# (tls.executor "docker": docker exec of deploy/certbot/certbot.sh). nginx serves whatever
# /etc/letsencrypt/serving points at: certbot's lineage once there is one, before that a
# self-signed placeholder, so nginx can start and answer the first ACME challenge. The first
# real certificate: trigger tls_cert_check with force_renewal (the placeholder reads "invalid").
set -eu
: "${TLS_DOMAIN:?set TLS_DOMAIN in .env}"
cd /etc/letsencrypt
if [ -f live/escrow/fullchain.pem ]; then
  ln -sfn live/escrow serving
elif [ ! -e serving ]; then
  python3 /deploy/certbot/placeholder.py "${TLS_DOMAIN}" /etc/letsencrypt/placeholder
  ln -sfn placeholder serving
fi
trap exit TERM
while :; do sleep 3600 & wait $!; done
