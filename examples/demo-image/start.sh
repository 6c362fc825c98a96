#!/bin/sh
# Beside a data service (scripts/demo configures one), the page shows what it answers at $DATA_URL.
# Like an app waiting for its database: when the engine restarts everything at once (dockerd restarted),
# the app may start before its data service, so it asks again for a few seconds.
data=""
if [ -n "$DATA_URL" ]; then
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    data=$(/bin/busybox wget -qO- "$DATA_URL" 2>&1) && break
    sleep 0.5
  done
fi
cat > /www/index.html <<HTML
<!doctype html>
<title>Preview of $STAGER_REPO#$STAGER_PR</title>
<h1>Preview of $STAGER_REPO#$STAGER_PR</h1>
<p>Branch <code>$STAGER_BRANCH</code> at <code>$STAGER_SHA</code>, served by Stager at $STAGER_URL</p>
<p>Data: $data</p>
HTML
exec /bin/busybox httpd -f -p 8080 -h /www
