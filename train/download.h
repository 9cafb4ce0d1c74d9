// Pretrained weights given as URLs (PaddleSeg `model.pretrained:` / `model.backbone.pretrained:`,
// PaddleX/PaddleDetection `pretrain_weights:`), downloaded once into a cache folder with libcurl.
//
// What PaddleSeg does (paddleseg/utils/utils.py download_pretrained_model at commit 018ec598,
// paddleseg/utils/download.py at 1e618536, paddleseg/utils/env/seg_env.py): a URL is anything with a
// network location; it is percent-decoded, the file is fetched with `requests` straight under its
// final name (an interrupted download leaves a truncated file that the next run takes as complete),
// archives are extracted under ~/.paddleseg/pretrained_model/<name>/ ($SEG_HOME overrides
// ~/.paddleseg), and a file's mere existence means "cached". PaddleDetection (ppdet/utils/download.py
// at commit 005e0ff8) writes "<name>_tmp" and moves it into place, checks a published md5 (its
// dataset table) and checks a cached .pdparams without one against the md5 the server sends in its
// `Content-MD5` header (base64; bcebos sends it).
// Here, stricter:
//   - Cache layout: <cache root>/pretrained/<parent>-<h>/<file>, where <file> is the URL's last path
//     segment, percent-decoded (as PaddleSeg), <parent> the segment before it (PaddleSeg's folder
//     name for .pdparams URLs; the host when there is none) and <h> the first 12 hex digits of the
//     MD5 of the whole URL, so that two URLs never share a file (.../a/model.pdparams on two hosts,
//     or the same path with two query strings). Characters other than [A-Za-z0-9._+-] in <parent>
//     and <file> become '_'. "ppdet://X" means "https://paddledet.bj.bcebos.com/X" (PaddleDetection's
//     parse_url).
//   - The cache root: DownloadOptions::cache_dir, else $ENGINE_CACHE_DIR, else $XDG_CACHE_HOME/engine,
//     else $HOME/.cache/engine.
//   - Only complete, verified files carry the final name: bytes go to "<file>.part", which is renamed
//     (atomically, after fsync) only when its size equals the announced length (Content-Length of a
//     200, the total of a 206's Content-Range; a chunked reply announces none) and its md5 matches
//     (DownloadOptions::md5, else the server's Content-MD5 of a whole-file response). So the final
//     name existing means "complete", and a cached file is reused without any request (with an md5
//     given, the cached file is checked against it first and downloaded again when it differs).
//   - Resume: an existing .part is continued with `Range: bytes=N-` (plus `If-Range: <ETag>` when the
//     first response had one, so a file changed on the server restarts instead of being spliced). A
//     server that answers 200 instead of 206 sends the whole file: the .part is truncated and
//     rewritten. 416 (range past the end) restarts from zero. "<file>.part.info" keeps the ETag,
//     total size and Content-MD5 of the response that began the .part.
//   - A connection that drops (or times out: no byte for timeout_seconds) keeps the .part and, while
//     attempts remain, resumes at once; the last failure is an Error and the .part stays for the next
//     run. A body shorter than its Content-Length is the "wrong size" Error. An HTTP client error (404,
//     403...) names the status and URL and leaves no file; a server error (5xx) is retried like a
//     dropped connection. An md5 mismatch removes the .part.
//   - Concurrency: "<file>.lock" (created once, never removed, so that no two processes lock two
//     different files of one name) is held with flock() while downloading; another process or thread
//     (data-parallel ranks of one node) waits on it, logs that it waits, then finds the final file
//     and reuses it. flock() locks an open file description, so threads of one process exclude each
//     other too. The lock is released by the kernel if its holder dies.
//   - Proxies come from the environment as for the curl program (http_proxy, https_proxy, all_proxy,
//     no_proxy: libcurl reads them itself); redirects are followed.
//   - Archives (.tar.gz, .tgz, .zip) are downloaded as they are; their reader opens them.
// Progress goes to `log`: a line when the transfer starts (URL, destination, resume offset), a line
// per 10% of a known size but at most one per 2 s (one per 10 s when the size is unknown), and a
// final line with size, time and rate.
// Errors are engine::Error with one line "<key>: <what failed> (<url>): <expected, found>".
// Tested by tests/test_download.cpp against an HTTP/1.1 server in the test process.
#pragma once
#include <ostream>
#include <string>

namespace engine::train {

struct DownloadOptions {
  // Root of the cache; files go under <cache_dir>/pretrained/. Empty: $ENGINE_CACHE_DIR, else
  // $XDG_CACHE_HOME/engine, else $HOME/.cache/engine (default_cache_dir()).
  std::string cache_dir;
  // Expected MD5 of the file, 32 hex digits (any case); empty: none published (the server's
  // Content-MD5 header is checked when it sends one).
  std::string md5;
  // Connecting longer than this, or receiving nothing for this long, fails the attempt.
  double timeout_seconds = 30;
  // Tries per call; each one after a dropped connection resumes where the previous one stopped.
  int attempts = 3;
};

// True for the strings download_to_cache() takes: http://, https:// and ppdet:// URLs with a host.
bool is_download_url(const std::string& s);

// The cache root download_to_cache() uses when DownloadOptions::cache_dir is empty.
std::string default_cache_dir();

// Where `url` is (or will be) cached; "<path>.part", "<path>.part.info" and "<path>.lock" sit beside it.
std::string cached_path_for(const std::string& url, const DownloadOptions& opt);

// Returns the local path of the downloaded (or already cached) file; `key` names the config key in
// errors (e.g. "model.backbone.pretrained"). Progress lines go to `log`.
std::string download_to_cache(const std::string& url, const DownloadOptions& opt, const std::string& key,
                              std::ostream& log);

// Lowercase hex MD5 of a file's bytes (RFC 1321); throws engine::Error when it cannot be read.
std::string md5_file_hex(const std::string& path);

}  // namespace engine::train
