#!/bin/sh
# Development only: compose's one-shot `rabbitmq-definitions`, the counterpart of the dev
# overlay's init container `definitions` (deploy/k8s/overlays/dev/rabbitmq.yaml), which
# does the same. Writes /etc/rabbitmq/definitions/definitions.json (a volume RabbitMQ
# imports at every boot: deploy/k8s/overlays/dev/rabbitmq.conf) from the dev overlay's
# rabbitmq-definitions.json, each @password:<name>@ replaced by the file
# /etc/water/mq-passwords/<name> (deploy/compose/secrets/mq/). A password this script
# cannot put into JSON and sed as it is, or a placeholder without a file, stops it.
set -eu
template=/etc/water/definitions/definitions.template.json
out=/etc/rabbitmq/definitions/definitions.json
cp "$template" "$out.new"
for file in /etc/water/mq-passwords/*; do
  name="$(basename "$file")"
  password="$(cat "$file")"
  case "$password" in
    "" | *[!A-Za-z0-9._~+/=-]*)
      echo "the password of $name is empty or has a character this script does not escape" >&2
      exit 1 ;;
  esac
  sed -i "s|@password:$name@|$password|g" "$out.new"
done
if grep -o '@password:[^@]*@' "$out.new"; then
  echo "no password file for the placeholders above" >&2
  exit 1
fi
# Only RabbitMQ (the same image's user) may read the passwords.
chown rabbitmq:rabbitmq "$out.new"
chmod 0400 "$out.new"
mv "$out.new" "$out"
echo "wrote $out"
