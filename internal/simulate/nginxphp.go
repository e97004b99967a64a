package simulate

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

type nginxPHP struct{ nginx, fpm string }

// nginxPHPBinaries finds the host's nginx and php-fpm (Debian's
// php-fpmX.Y), which the nginx-php victim runs from the host's /usr.
func nginxPHPBinaries() (nginxPHP, error) {
	var b nginxPHP
	if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
		return b, fmt.Errorf("the nginx-php victim needs the host's nginx in /usr/sbin (apt-get install -y nginx php-fpm)")
	}
	b.nginx = "/usr/sbin/nginx"
	m, _ := filepath.Glob("/usr/sbin/php-fpm*")
	if len(m) == 0 {
		return b, fmt.Errorf("the nginx-php victim needs the host's php-fpm in /usr/sbin (apt-get install -y nginx php-fpm)")
	}
	sort.Strings(m)
	b.fpm = m[len(m)-1]
	return b, nil
}

// addNginxPHP writes the nginx and php-fpm configuration of the nginx-php
// victim into the image (/etc/vigil-sim): nginx on :8080 passes *.php to
// php-fpm on 127.0.0.1:9000, whose workers run as www-data; every
// writable path is under /tmp.
//
// /bin/sh is the host's dash (or bash), as in a Debian php image: PHP's
// system() runs `/bin/sh -c`, and busybox's sh would run many commands
// inside its own process without exec.
func addNginxPHP(image string) error {
	for _, sh := range []string{"/usr/bin/dash", "/usr/bin/bash"} {
		if _, err := os.Stat(sh); err != nil {
			continue
		}
		link := filepath.Join(image, "bin/sh")
		if err := os.Remove(link); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("replace the image's /bin/sh: %w", err)
		}
		if err := os.Symlink(sh, link); err != nil {
			return fmt.Errorf("link the image's /bin/sh to %s: %w", sh, err)
		}
		break
	}
	dir := filepath.Join(image, "etc/vigil-sim")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	files := map[string]string{
		"nginx.conf": fmt.Sprintf(`# vigil simulation victim: nginx in front of php-fpm
user www-data;
worker_processes 1;
pid /tmp/nginx.pid;
error_log stderr;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path /tmp/nginx-body;
    proxy_temp_path /tmp/nginx-proxy;
    fastcgi_temp_path /tmp/nginx-fastcgi;
    uwsgi_temp_path /tmp/nginx-uwsgi;
    scgi_temp_path /tmp/nginx-scgi;
    server {
        listen %d;
        root %s;
        location ~ \.php$ {
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_read_timeout 90s;
            fastcgi_pass 127.0.0.1:9000;
        }
    }
}
`, webPort, webRoot),
		"php-fpm.conf": `; vigil simulation victim: php-fpm pool running as the web user
[global]
pid = /tmp/php-fpm.pid
error_log = /proc/self/fd/2
daemonize = yes

[www]
user = www-data
group = www-data
listen = 127.0.0.1:9000
pm = static
pm.max_children = 2
clear_env = no
catch_workers_output = yes
`,
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	return nil
}
