# W8 peer: aiohttp.web (on uvloop when installed), one process.
import sys
from aiohttp import web
try:
    import uvloop
    uvloop.install()
except ImportError:
    pass

async def hello(request):
    return web.Response(text="Hello, World!")

app = web.Application()
app.router.add_get("/", hello)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
