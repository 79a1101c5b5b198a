"""TLS certificates (``tls_cert_check``): probe every domain, renew through certbot, reload nginx."""
