// Hydrates a page's islands as soon as the wasm client is ready. Leptos's own islands loader
// first waits for the browser to be idle, and only then starts importing the client it had
// preloaded: on a page of images that costs the person a few hundred milliseconds of dead
// buttons. The JS glue and the wasm are the ones the page's preload links name
// (`IslandScripts`); a page without them has no islands and this does nothing.
//
// Islands are hydrated in document order. An island inside another island's server-rendered
// children (`<leptos-children>`) hydrates after its parent, under the owner its parent left on
// that element, as Leptos's loader does.
const glue = document.querySelector('link[rel="modulepreload"][data-islands]');
const wasm = document.querySelector('link[rel="preload"][data-islands]');

if (glue && wasm) {
  const client = await import(glue.href);
  await client.default({ module_or_path: wasm.href });
  client.hydrate();

  const parents = [];
  const visit = async (element) => {
    const tag = element.localName;
    if (tag === 'leptos-island') {
      const island = client[element.dataset.component];
      if (island) {
        parents.at(-1)?.();
        await island(element);
      } else {
        console.warn(`No island called ${element.dataset.component} in the client.`);
      }
    } else if (tag === 'leptos-children') {
      parents.push(element.$$on_hydrate);
      for (const child of element.children) await visit(child);
      parents.pop();
      return;
    }
    for (const child of element.children) await visit(child);
  };
  await visit(document.body);
}
