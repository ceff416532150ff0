/* The command-line tools of the lasync binary, kept out of main.c (which
 * is lua.c's):
 *
 *   lasync ps PID       the tasks of an inspectable lasync process
 *   lasync pstree PID   their await tree
 *   lasync trace-view out.json > out.html
 *                       a self-contained page drawing a LASYNC_TRACE file
 *
 * Only these exact shapes are tools (a word and a number): `lasync ps`
 * alone, or with a script's arguments, still runs a script named ps. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "host.h"

static int is_pid(const char *s) {
  if (!*s || strlen(s) > 9) return 0;
  for (; *s; s++)
    if (!isdigit((unsigned char)*s)) return 0;
  return 1;
}

/* Sends cmd to process pid's inspector and copies the answer to stdout. */
static int inspect(const char *prog, const char *cmd, const char *pid) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  int rc = host_inspect_path(strtol(pid, NULL, 10), sa.sun_path,
                             sizeof sa.sun_path);
  int fd = rc ? -1 : socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    fprintf(stderr, "%s: %s: no inspectable lasync process %s (%s; start "
            "it with LASYNC_INSPECT=1 or lasync -X inspect)\n", prog, cmd,
            pid, rc ? uv_strerror(rc) : strerror(errno));
    if (fd >= 0) close(fd);
    return 1;
  }
  /* One send, and no SIGPIPE: the process may answer and close as soon
   * as it has read the command, before a second write would arrive. */
  char buf[4096];
  int len = snprintf(buf, sizeof buf, "%s\n", cmd);
  ssize_t n = send(fd, buf, (size_t)len, MSG_NOSIGNAL);
  if (n != len) {
    fprintf(stderr, "%s: %s: cannot ask process %s (%s)\n", prog, cmd, pid,
            n < 0 ? strerror(errno) : "short write");
    close(fd);
    return 1;
  }
  int any = 0, failed = 0;
  while ((n = read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
    if (n < 0) continue;
    if (!any && n >= 6 && memcmp(buf, "error:", 6) == 0) failed = 1;
    fwrite(buf, 1, (size_t)n, failed ? stderr : stdout);
    any = 1;
  }
  close(fd);
  fflush(stdout);
  if (!any) {
    fprintf(stderr, "%s: %s: process %s closed the connection\n", prog, cmd,
            pid);
    return 1;
  }
  return failed;
}

/* ---- trace-view ------------------------------------------------------------ */

/* The page: the trace is embedded as JSON; a canvas draws one row per
 * track (the event loop first, then the tasks), each step a slice named
 * by task and line, wake flows as lines from waker to woken step, and
 * instants as ticks coloured by kind (cancel, timer, io, http, loop
 * wake-ups), counted in a legend; hovering shows a tick's args.  No
 * network. */
static const char PAGE_HEAD[] =
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\n"
    "<title>lasync trace</title>\n<style>\n"
    "body{font:12px sans-serif;margin:8px;background:#fff;color:#222}\n"
    "#info{margin:4px 0;min-height:1.4em}canvas{border:1px solid #ccc}\n"
    "</style></head><body>\n<h3>lasync trace timeline</h3>\n"
    "<div id=\"info\">hover a slice or a tick</div>\n"
    "<div id=\"legend\"></div>\n<canvas id=\"c\"></canvas>\n"
    "<script type=\"application/json\" id=\"trace\">\n";

static const char PAGE_TAIL[] =
    "\n</script>\n<script>\n"
    "const data=JSON.parse(document.getElementById('trace').textContent);\n"
    "const ev=data.traceEvents||data;const names={},tids=new Set([0]);\n"
    "let t0=Infinity,t1=0;\n"
    "for(const e of ev){if(e.ph==='M'&&e.name==='thread_name')names[e.tid]="
    "e.args.name;if(e.ts!==undefined){tids.add(e.tid);t0=Math.min(t0,e.ts);"
    "t1=Math.max(t1,e.ts+(e.dur||0));}}\n"
    "if(!isFinite(t0)){t0=0;t1=1;}\n"
    "const rows=[...tids].sort((a,b)=>a-b),rowOf={};rows.forEach((t,i)=>"
    "rowOf[t]=i);\n"
    "const L=160,RH=22,W=Math.max(900,window.innerWidth-40),H=30+rows.length"
    "*RH;\n"
    "const c=document.getElementById('c');c.width=W;c.height=H;\n"
    "const g=c.getContext('2d');const sx=(W-L-10)/Math.max(t1-t0,1);\n"
    "const X=ts=>L+(ts-t0)*sx,Y=tid=>20+rowOf[tid]*RH;\n"
    "g.fillStyle='#fff';g.fillRect(0,0,W,H);g.font='11px sans-serif';\n"
    "rows.forEach((t,i)=>{g.fillStyle=i%2?'#f4f4f4':'#fafafa';"
    "g.fillRect(0,Y(t),W,RH);g.fillStyle='#222';g.fillText((names[t]||"
    "('Task-'+t)).slice(0,24),4,Y(t)+15);});\n"
    "g.strokeStyle='#999';g.beginPath();for(let k=0;k<=10;k++){const x=L+"
    "k*(W-L-10)/10;g.moveTo(x,14);g.lineTo(x,H);g.fillStyle='#555';"
    "g.fillText(((t0+k*(t1-t0)/10-t0)/1000).toFixed(1)+' ms',x+2,11);}"
    "g.stroke();\n"
    "const hues=[210,30,120,280,0,170,60,330],slices=[],starts={},"
    "ticks=[],counts={};\n"
    "const tick={cancel:'#d00',timer:'#e80',io:'#06c',http:'#090',"
    "loop:'#888'};\n"
    "for(const e of ev){if(e.ph==='X'){const x=X(e.ts),w=Math.max(2,e.dur*sx)"
    ";g.fillStyle='hsl('+hues[e.tid%8]+',60%,55%)';g.fillRect(x,Y(e.tid)+3,"
    "w,RH-6);if(w>40){g.fillStyle='#fff';g.fillText(e.name.slice(0,w/6),x+"
    "2,Y(e.tid)+15);}slices.push({x,w,y:Y(e.tid),e});}"
    "else if(e.ph==='s')starts[e.id]=e;"
    "else if(e.ph==='i'){const x=X(e.ts);g.fillStyle=tick[e.cat]||'#888';"
    "g.fillRect(x-1,Y(e.tid)+1,3,RH-2);ticks.push({x,y:Y(e.tid),e});"
    "counts[e.cat]=(counts[e.cat]||0)+1;}}\n"
    "document.getElementById('legend').textContent='instants: '+Object."
    "keys(tick).map(k=>k+' '+(counts[k]||0)).join(', ');\n"
    "g.strokeStyle='rgba(0,0,0,0.35)';for(const e of ev){if(e.ph==='f'&&"
    "starts[e.id]){const s=starts[e.id];g.beginPath();g.moveTo(X(s.ts),Y(s."
    "tid)+RH/2);g.lineTo(X(e.ts),Y(e.tid)+RH/2);g.stroke();}}\n"
    "c.onmousemove=m=>{const r=c.getBoundingClientRect(),x=m.clientX-r.left,"
    "y=m.clientY-r.top,at=e=>' at '+((e.ts-t0)/1000).toFixed(3)+' ms';"
    "const i=ticks.find(i=>Math.abs(x-i.x)<=2&&y>=i.y&&y<=i.y+RH);"
    "const s=slices.find(s=>x>=s.x&&x<=s.x+s.w&&y>=s.y&&y<=s.y+RH);"
    "document.getElementById('info').textContent=i?i.e.name+at(i.e)+(i.e."
    "args?' '+JSON.stringify(i.e.args):''):s?s.e.name+' — '+(s.e.dur/1000)"
    ".toFixed(3)+' ms'+at(s.e):'hover a slice or a tick';};\n"
    "document.title='lasync trace ('+slices.length+' steps)';\n"
    "</script></body></html>\n";

static int trace_view(const char *prog, const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "%s: trace-view: cannot open '%s': %s\n", prog, path,
            strerror(errno));
    return 1;
  }
  int c, first = -1;
  while ((c = fgetc(f)) != EOF && (c == ' ' || c == '\n' || c == '\t' || c == '\r')) {
  }
  first = c;
  if (first != '{' && first != '[') {
    fprintf(stderr, "%s: trace-view: '%s' is not a trace file (JSON, as "
            "LASYNC_TRACE writes)\n", prog, path);
    fclose(f);
    return 1;
  }
  fputs(PAGE_HEAD, stdout);
  /* "</" inside the JSON would end the script element: "<\/" is the
   * same JSON */
  for (int prev = 0; c != EOF; prev = c, c = fgetc(f)) {
    if (c == '/' && prev == '<') fputc('\\', stdout);
    fputc(c, stdout);
  }
  fclose(f);
  fputs(PAGE_TAIL, stdout);
  return fflush(stdout) == 0 ? 0 : 1;
}

int host_tools_main(int argc, char **argv) {
  if (argc != 3) return -1;
  const char *prog = argv[0] && argv[0][0] ? argv[0] : "lasync";
  if ((strcmp(argv[1], "ps") == 0 || strcmp(argv[1], "pstree") == 0) &&
      is_pid(argv[2]))
    return inspect(prog, argv[1], argv[2]);
  if (strcmp(argv[1], "trace-view") == 0) return trace_view(prog, argv[2]);
  return -1;
}
