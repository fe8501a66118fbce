{
  cmd = [ "sh" ];
  env = { GREETING = "hello"; };
}
