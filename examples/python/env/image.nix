# Image settings; the "image" key of .nixdockerrc.json overrides them.
{
  cmd = [ "python3" ];
  env = { SSL_CERT_FILE = "/etc/ssl/certs/ca-bundle.crt"; };
}
