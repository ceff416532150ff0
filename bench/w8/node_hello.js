// W8 peer: Node's http module, one process (one core).
const http = require("http");
const port = Number(process.argv[2]);
http.createServer((req, res) => {
  res.writeHead(200, {"Content-Type": "text/plain"});
  res.end("Hello, World!");
}).listen(port, "127.0.0.1");
