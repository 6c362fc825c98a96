#!/bin/sh
# Beside a data service (scripts/demo configures one), the page shows what it answers at $DATA_URL.
data=""
if [ -n "$DATA_URL" ]; then
  data=$(/bin/busybox wget -qO- "$DATA_URL" 2>&1)
fi
cat > /www/index.html <<HTML
<!doctype html>
<title>Preview of $STAGER_REPO#$STAGER_PR</title>
<h1>Preview of $STAGER_REPO#$STAGER_PR</h1>
<p>Branch <code>$STAGER_BRANCH</code> at <code>$STAGER_SHA</code>, served by Stager at $STAGER_URL</p>
<p>Data: $data</p>
HTML
exec /bin/busybox httpd -f -p 8080 -h /www
