// The bare passthrough Worker: one fetch to the upstream, the response
// returned as is. The physical limit of any Worker proxy on this machine.
export default {
  fetch(request, env) {
    const url = new URL(request.url);
    return fetch(`${env.UPSTREAM}${url.pathname}${url.search}`, { method: request.method, headers: request.headers, body: request.body });
  },
};
